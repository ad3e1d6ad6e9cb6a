"""Accounts gain `email_verified` (existing accounts start unverified: nothing proved their address;
with EMAIL_VERIFICATION=mandatory their next login mails them a link) and `pending_email` and `pending_email_at` (an
email change waiting for its link, and since when)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('user', '0004_event')]

    initial = False

    operations = [
        ops.AddField(
            model_name='User',
            name='email_verified',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='User',
            name='pending_email',
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name='User',
            name='pending_email_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
