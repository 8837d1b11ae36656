"""Validators: a change's applied_at from 2000-01-01 to 2100-01-01 UTC, a rehearsal's
rehearsed_at from 2000-01-01 to now (at most 5 minutes ahead). Rows stored before are left
as they are: the comparison reports a change too early for a window instead of failing."""

import signals_app.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('signals_app', '0014_threshold_minutes_within_a_week'),
    ]

    operations = [
        migrations.AlterField(
            model_name='change',
            name='applied_at',
            field=models.DateTimeField(validators=[signals_app.models.validate_plausible_time]),
        ),
        migrations.AlterField(
            model_name='historicalchange',
            name='applied_at',
            field=models.DateTimeField(validators=[signals_app.models.validate_plausible_time]),
        ),
        migrations.AlterField(
            model_name='historicalrollbacknote',
            name='rehearsed_at',
            field=models.DateTimeField(blank=True, null=True, validators=[signals_app.models.validate_past_time]),
        ),
        migrations.AlterField(
            model_name='rollbacknote',
            name='rehearsed_at',
            field=models.DateTimeField(blank=True, null=True, validators=[signals_app.models.validate_past_time]),
        ),
    ]
