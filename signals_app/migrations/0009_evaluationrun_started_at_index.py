"""EvaluationRun: an index on started_at.

The clock stores a run a minute. The latest finished run is read by started_at
(ORDER BY started_at DESC LIMIT 1) and `prune` deletes runs older than
DQ_EVALUATION_RUN_RETENTION_DAYS by started_at; without the index both scan the table.
A plain CREATE INDEX: it blocks the clock's inserts while it builds, well under a second
for a year of runs (~525,000 rows).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("signals_app", "0008_thresholdstate_changed_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="evaluationrun",
            index=models.Index(fields=["started_at"], name="evaluation_run_started_at"),
        ),
    ]
