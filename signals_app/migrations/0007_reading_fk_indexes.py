"""Reading: drop the single-column indexes of route, signal and environment.

route is the first column of reading_route_signal_env_time; a signal or an environment is a
quarter or more of all readings, where an index does not serve a query. Each index is paid on
every insert (bench-ingest). Only the indexes go: letting AlterField do it would also drop
and re-add the foreign keys, which re-checks every reading under a table lock.
"""

import django.db.models.deletion
from django.db import migrations, models

# Django's names for the indexes it created with the foreign keys (the same on both databases).
INDEXES = {
    "signals_app_reading_route_id_b0a5d332": "route_id",
    "signals_app_reading_signal_id_2585fc89": "signal_id",
    "signals_app_reading_environment_id_2c202c61": "environment_id",
}


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0006_thresholdstate_fillfactor"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="reading",
                    name="environment",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="signals_app.environment",
                    ),
                ),
                migrations.AlterField(
                    model_name="reading",
                    name="route",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="signals_app.route",
                    ),
                ),
                migrations.AlterField(
                    model_name="reading",
                    name="signal",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="signals_app.signal",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    [f"DROP INDEX IF EXISTS {name}" for name in INDEXES],
                    [
                        f"CREATE INDEX {name} ON signals_app_reading ({column})"
                        for name, column in INDEXES.items()
                    ],
                )
            ],
        )
    ]
