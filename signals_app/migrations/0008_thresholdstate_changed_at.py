from django.db import migrations, models


class Migration(migrations.Migration):
    """A pass writes only the states that changed: ThresholdState.evaluated_at becomes
    changed_at (a rename, no rewrite), and each run counts the states it wrote."""

    dependencies = [
        ("signals_app", "0007_reading_route_index"),
    ]

    operations = [
        migrations.RenameField(
            model_name="thresholdstate",
            old_name="evaluated_at",
            new_name="changed_at",
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="states_changed",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
