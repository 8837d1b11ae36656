"""Threshold: window_minutes 1 to 10080 and sustain_minutes 0 to 10080 (a week), as the API
has always allowed, and min_samples 1 to 1,000,000, as validators (the admin's forms) and
check constraints that say what they hold in words."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('signals_app', '0013_threshold_minutes_clamp'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='threshold',
            name='threshold_window_positive',
        ),
        migrations.AlterField(
            model_name='historicalthreshold',
            name='min_samples',
            field=models.PositiveIntegerField(default=20, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1000000)]),
        ),
        migrations.AlterField(
            model_name='historicalthreshold',
            name='sustain_minutes',
            field=models.PositiveIntegerField(default=0, help_text='How long a breach must last before it counts.', validators=[django.core.validators.MaxValueValidator(10080)]),
        ),
        migrations.AlterField(
            model_name='historicalthreshold',
            name='window_minutes',
            field=models.PositiveIntegerField(default=15, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(10080)]),
        ),
        migrations.AlterField(
            model_name='threshold',
            name='min_samples',
            field=models.PositiveIntegerField(default=20, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1000000)]),
        ),
        migrations.AlterField(
            model_name='threshold',
            name='sustain_minutes',
            field=models.PositiveIntegerField(default=0, help_text='How long a breach must last before it counts.', validators=[django.core.validators.MaxValueValidator(10080)]),
        ),
        migrations.AlterField(
            model_name='threshold',
            name='window_minutes',
            field=models.PositiveIntegerField(default=15, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(10080)]),
        ),
        migrations.AddConstraint(
            model_name='threshold',
            constraint=models.CheckConstraint(condition=models.Q(('window_minutes__gte', 1), ('window_minutes__lte', 10080)), name='threshold_window_within_a_week', violation_error_message='window_minutes must be from 1 to 10080 minutes (a week)'),
        ),
        migrations.AddConstraint(
            model_name='threshold',
            constraint=models.CheckConstraint(condition=models.Q(('sustain_minutes__lte', 10080)), name='threshold_sustain_within_a_week', violation_error_message='sustain_minutes must be from 0 to 10080 minutes (a week)'),
        ),
        migrations.AlterConstraint(
            model_name='threshold',
            name='threshold_min_samples',
            constraint=models.CheckConstraint(condition=models.Q(('min_samples__gte', 1)), name='threshold_min_samples', violation_error_message='min_samples must be at least 1'),
        ),
    ]
