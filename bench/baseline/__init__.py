"""The bench's baseline: the chat of the Channels tutorial, served by the same daphne and
Redis as the service so that the machine's noise cancels in the ratios.

It is the tutorial's design on purpose (https://channels.readthedocs.io/en/stable/tutorial/):
one group per room, every frame ``group_send`` to it, nothing stored, no sequence numbers,
no acknowledgements, no authentication, no rate limits, the core Redis layer with its
default capacity. What it does per message is the floor of any Channels chat; the service
does all of that plus persistence, ordering, idempotency, unread counts and notifications.
"""
