"""``manage.py chat_token USER_ID [--name NAME] [--ttl SECONDS]``: print a chat token.

Mints the JWT the marketplace would mint (``identity.token_mint``, signed with this
deployment's ``CHAT_TOKEN_SECRET``), for the terminal client, curl and the demo. Only the
token is printed, so ``TOKEN=$(manage.py chat_token buyer-ann)`` works.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat_service import demo_data
from chat_service.protocol.frames import ID_MAX_CHARS, ID_RE
from chat_service.transport.identity import token_mint


class Command(BaseCommand):
    help = "Print a chat token (JWT) for USER_ID, as the marketplace would mint it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", help="the user id (the token's sub claim)")
        parser.add_argument(
            "--name",
            default=None,
            help="display name (default: the demo user's name, else USER_ID)",
        )
        parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires (default 3600)")

    def handle(self, *args: Any, **options: Any) -> None:
        user_id: str = options["user_id"]
        ttl: int = options["ttl"]
        # token_verify refuses these; better to say so now than to hand out a dud.
        if not ID_RE.match(user_id):
            raise CommandError(f"USER_ID must be 1-{ID_MAX_CHARS} letters, digits, '-', '_' or '.'.")
        if ttl < 1:
            raise CommandError("--ttl must be at least 1 second.")
        name = options["name"]
        if name is None:
            demo_user = demo_data.USERS.get(user_id)
            name = demo_user.name if demo_user else user_id
        self.stdout.write(token_mint(user_id=user_id, name=name, ttl_s=ttl))
