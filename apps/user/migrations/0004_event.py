from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('user', '0003_username_skeleton')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Event',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user_id', fields.IntField()),
                ('actor_id', fields.IntField(null=True)),
                ('type', fields.CharField(max_length=40)),
                ('at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ip_address', fields.CharField(null=True, max_length=45)),
                ('user_agent', fields.CharField(default='', max_length=512)),
            ],
            options={'table': 'user_event', 'app': 'user', 'indexes': [Index(fields=['user_id', 'at'])], 'pk_attr': 'id', 'table_description': "One thing that happened to an account (the contract's event types), written in the same"},
            bases=['Model'],
        ),
    ]
