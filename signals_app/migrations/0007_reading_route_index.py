"""Reading: drop the single-column index of route_id.

route_id is the first column of reading_route_signal_env_time, which serves every query the
single-column index did; each index is paid on every insert (bench-ingest). Only the index
goes: letting AlterField do it would also drop and re-add the foreign key, which re-checks
every reading under a table lock.
"""

import django.db.models.deletion
from django.db import migrations, models

# Django's name for the index it created with the foreign key (the same on both databases).
INDEX = "signals_app_reading_route_id_b0a5d332"


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0006_thresholdstate_fillfactor"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    f"CREATE INDEX {INDEX} ON signals_app_reading (route_id)",
                )
            ],
        )
    ]
