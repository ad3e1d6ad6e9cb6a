"""Second factors: an authenticator app per account (its secret sealed), recovery codes as digests,
passkeys, and the single-use WebAuthn challenges."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('user', '0005_email_verification')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Passkey',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('user.User', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='passkeys', on_delete=OnDelete.CASCADE)),
                ('credential_id', fields.CharField(unique=True, max_length=1400)),
                ('public_key', fields.BinaryField()),
                ('sign_count', fields.BigIntField(default=0)),
                ('transports', fields.CharField(default='', max_length=200)),
                ('aaguid', fields.CharField(default='', max_length=36)),
                ('backed_up', fields.BooleanField(default=False)),
                ('name', fields.CharField(max_length=100)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'user_passkey', 'app': 'user', 'pk_attr': 'id', 'table_description': 'A WebAuthn credential (passkeys.py): a second factor, and a passwordless login when it is'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RecoveryCode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('user.User', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='recovery_codes', on_delete=OnDelete.CASCADE)),
                ('digest', fields.CharField(max_length=64)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'user_recovery_code', 'app': 'user', 'pk_attr': 'id', 'table_description': "One of an account's ten single-use recovery codes, as an HMAC digest (mfa.py): a copy of the"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TOTPDevice',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.OneToOneField('user.User', source_field='user_id', db_constraint=True, to_field='id', related_name='totp', on_delete=OnDelete.CASCADE)),
                ('secret', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('confirmed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_step', fields.BigIntField(null=True)),
            ],
            options={'table': 'user_totp_device', 'app': 'user', 'pk_attr': 'id', 'table_description': "An account's authenticator app (mfa.py), one per account, active once a code confirmed it."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebAuthnChallenge',
            fields=[
                ('digest', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('purpose', fields.CharField(max_length=16)),
                ('user_id', fields.IntField(null=True)),
                ('session_id', fields.CharField(null=True, max_length=36)),
                ('attempt', fields.CharField(null=True, max_length=64)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'user_webauthn_challenge', 'app': 'user', 'pk_attr': 'digest', 'table_description': "A challenge handed to a browser, found again by its digest in the answer's clientDataJSON and"},
            bases=['Model'],
        ),
    ]
