from django.db import migrations, models


class Migration(migrations.Migration):
    """A pass writes only the states that changed: ThresholdState.evaluated_at becomes the
    field changed_at, and each run counts the states it wrote.

    Nothing is renamed or required in the database, so the processes of the previous release
    keep working while `migrate` runs (the Procfile's release phase): changed_at keeps the
    column evaluated_at, and states_changed has a database default for their inserts.
    """

    dependencies = [
        ("signals_app", "0007_reading_route_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RenameField(
                    model_name="thresholdstate",
                    old_name="evaluated_at",
                    new_name="changed_at",
                ),
                migrations.AlterField(
                    model_name="thresholdstate",
                    name="changed_at",
                    field=models.DateTimeField(blank=True, db_column="evaluated_at", null=True),
                ),
            ],
            database_operations=[],  # the column keeps its name
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="states_changed",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
    ]
