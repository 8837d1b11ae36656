"""signals_app.forms.FastRenderer writes the input and textarea widgets in Python: the same
markup as Django's templates, for every kind of value and attribute."""

import re

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.forms.utils import flatatt
from django.test import override_settings
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from signals_app.admin import FastSelect
from signals_app.forms import FastRenderer
from signals_app.models import RollbackNote
from tests.builders import give_role, make_readings, make_route, make_threshold

ATTRS = [
    {},
    {"id": "id_warn", "step": "any", "required": True},
    {"disabled": True, "readonly": False, "class": 'a"b<c>&d', "data-x": 0},
    {"placeholder": mark_safe("<b>safe</b>"), "maxlength": 255, "autofocus": True},
]
VALUES = [None, "", "plain", 'quote " and <tag> & amp', 12, 0, 2.5, mark_safe("<i>safe</i>")]
WIDGETS = [
    forms.TextInput,
    forms.NumberInput,
    forms.EmailInput,
    forms.URLInput,
    forms.PasswordInput,
    forms.HiddenInput,
    forms.CheckboxInput,
    forms.DateInput,
    forms.DateTimeInput,
    forms.TimeInput,
    forms.Textarea,
]


@pytest.mark.parametrize("widget_class", WIDGETS, ids=lambda w: w.__name__)
def test_it_renders_each_widget_exactly_as_the_templates_do(widget_class):
    templates, fast = DjangoTemplates(), FastRenderer()
    for attrs in ATTRS:
        for value in VALUES:
            widget = widget_class(attrs=attrs)
            if widget_class is forms.PasswordInput:
                widget.render_value = True
            expected = widget.render("field", value, renderer=templates)
            assert widget.render("field", value, renderer=fast) == expected, (attrs, value)


def test_a_checked_checkbox_keeps_its_checked_attribute():
    html = forms.CheckboxInput().render("DELETE", True, renderer=FastRenderer())
    assert html == '<input type="checkbox" name="DELETE" checked>'


def test_other_widgets_still_come_from_the_templates():
    widget = forms.Select(choices=[("1", "one"), ("2", "two")])
    assert widget.render("pick", "2", renderer=FastRenderer()) == widget.render(
        "pick", "2", renderer=DjangoTemplates()
    )


def test_it_is_the_projects_form_renderer(settings):
    assert settings.FORM_RENDERER == "signals_app.forms.FastRenderer"


@pytest.mark.django_db
def test_the_route_page_is_the_same_page_with_either_renderer(client, alice, blog):
    route = make_route(blog, "/posts/{slug}")
    make_threshold(route)
    make_threshold(route, window_minutes=60)
    make_readings(route, [10.0, 20.0, 30.0])
    RollbackNote.objects.create(route=route, steps='redeploy "1.7.8" <safely>', owner=blog.owner)
    give_role(alice)
    client.force_login(alice)
    url = reverse("admin:signals_app_route_change", args=[route.pk])

    def page():
        html = client.get(url).content.decode()
        # What moves with the clock between two renders: the masked CSRF token, the time of
        # evaluation and the charts' axes.
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        html = re.sub(r"evaluated \d\d:\d\d:\d\d", "", html)
        return re.sub(r'<section id="charts">.*?</section>', "", html, flags=re.S)

    fast = page()
    with override_settings(FORM_RENDERER="django.forms.renderers.DjangoTemplates"):
        templates = page()
    assert fast.count("<input") > 10
    assert fast == templates


def select_from_context(widget, name, value, attrs=None):
    """The admin's FastSelect markup, built from Django's own Select.get_context."""
    context = widget.get_context(name, value, attrs)["widget"]
    options = "".join(
        format_html(
            '<option value="{}"{}>{}</option>',
            str(option["value"]),
            flatatt(option["attrs"]),
            option["label"],
        )
        for _group, group_options, _index in context["optgroups"]
        for option in group_options
    )
    return format_html(
        '<select name="{}"{}>{}</select>', name, flatatt(context["attrs"]), mark_safe(options)
    )


CHOICES = [
    [("", "---------"), (1, "response_time_ms"), (2, 'error "rate" <%>')],
    [(None, "none"), ("p95", "p95"), ("p95", "p95 again"), ("mean", mark_safe("<b>mean</b>"))],
]


@pytest.mark.parametrize("choices", CHOICES)
@pytest.mark.parametrize("value", [None, "", 1, "2", "p95", ["p95"], "missing"])
def test_the_admins_fast_select_picks_and_escapes_as_django_does(choices, value):
    attrs = {"required": True, "id": "id_thresholds-0-signal"}
    widget = FastSelect(attrs={"class": "x"}, choices=choices)
    assert widget.render("signal", value, attrs) == select_from_context(
        widget, "signal", value, attrs
    )


def test_a_fast_select_with_groups_falls_back_to_django():
    choices = [("Latency", [(1, "p50"), (2, "p95")]), (3, "mean")]
    widget = FastSelect(choices=choices)
    assert widget.render("s", 2) == forms.Select(choices=choices).render("s", 2)
