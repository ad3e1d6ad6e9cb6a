from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('user', '0001_initial')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='User',
            name='username_key',
            field=fields.CharField(unique=True, max_length=450),
        ),
    ]
