"""The outbox: a mail is a row, written in the transaction of the change that causes it, and sent
after the answer by the sender (outbox.py). Nothing accepted is lost: a row stays until it is sent,
or until the sender gives up on it (loudly: logged, and kept with `failed_at` for the operator)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Mail(Model):
    id = fields.BigIntField(primary_key=True)
    to = fields.CharField(max_length=254)
    subject = fields.CharField(max_length=255)
    text = fields.TextField()
    html = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    # not before: the next attempt (backoff after a failure)
    send_after = fields.DatetimeField()
    # a sender that took the mail holds it until then; another may take it after (it crashed)
    claimed_until = fields.DatetimeField(null=True)
    attempts = fields.IntField(default=0)
    # the last failure's kind (an exception's name), never the message (it can hold the address)
    last_error = fields.CharField(max_length=100, null=True)
    sent_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "mail_mail"
        indexes = (("sent_at", "failed_at", "send_after"),)  # the sender's look-up of what is due
