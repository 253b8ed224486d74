"""The e-mail channel: Django's mail settings (EMAIL_BACKEND, EMAIL_HOST, …; the console
backend in the embedded demo).

Each delivery is one message to the address the marketplace's token carried
(``NotificationProfile.email``). E-mail has no idempotency key of its own, so the
delivery's key is the ``Message-ID`` (``<key@order-chat>``) and an ``X-Idempotency-Key``
header: a resend after a worker died mid-send is the same message to every mail system
that de-duplicates by Message-ID. Answers: a permanent SMTP refusal (5xx: unknown
recipient, rejected content) is not retryable; temporary ones (4xx), timeouts and
connection errors are.
"""

from __future__ import annotations

import smtplib

from django.core.mail import EmailMessage, get_connection

from chat_service.machinery.delivery.signed_http import ERROR_BODY_CHARS, DeliveryResult
from chat_service.threads.notifications.models import NotificationDelivery

FOOTER = "\n\n—\nYou get this because of your order {order_id}. Mute the thread or turn e-mail off in the chat."


class EmailChannel:
    def __init__(self, *, from_email: str) -> None:
        self._from = from_email

    def send(self, delivery: NotificationDelivery) -> DeliveryResult:
        payload = delivery.payload
        message = EmailMessage(
            subject=payload["title"],
            body=payload["body"] + FOOTER.format(order_id=payload["order_id"]),
            from_email=self._from,
            to=[payload["to"]],
            headers={
                "Message-ID": f"<{delivery.idempotency_key}@order-chat>",
                "X-Idempotency-Key": delivery.idempotency_key,
            },
            connection=get_connection(fail_silently=False),
        )
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            permanent = all(code >= 500 for code in codes)
            return DeliveryResult(accepted=False, retryable=not permanent, error=f"recipients refused: {codes}")
        except smtplib.SMTPResponseException as error:
            return DeliveryResult(
                accepted=False,
                retryable=error.smtp_code < 500,
                error=f"SMTP {error.smtp_code}: {error.smtp_error!r}"[:ERROR_BODY_CHARS],
            )
        except (OSError, smtplib.SMTPException) as error:
            return DeliveryResult(
                accepted=False, retryable=True, error=f"{type(error).__name__}: {error}"[:ERROR_BODY_CHARS]
            )
        return DeliveryResult.ok()
