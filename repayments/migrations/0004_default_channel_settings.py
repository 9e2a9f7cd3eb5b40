from decimal import Decimal

from django.db import migrations

# Single-payment limits as the channels typically set them for loan repayment;
# admins adjust them in Django admin.
DEFAULTS = [
    ("unionpay", 1, Decimal("200000.00")),
    ("alipay", 2, Decimal("50000.00")),
    ("wechatpay", 3, Decimal("50000.00")),
]


def add_defaults(apps, schema_editor):
    ChannelSetting = apps.get_model("repayments", "ChannelSetting")
    for channel, priority, limit in DEFAULTS:
        ChannelSetting.objects.get_or_create(
            channel=channel, defaults={"priority": priority, "single_payment_limit": limit}
        )


class Migration(migrations.Migration):
    dependencies = [("repayments", "0003_channel_settings")]
    operations = [migrations.RunPython(add_defaults, migrations.RunPython.noop)]
