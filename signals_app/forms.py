"""The form renderer (settings.FORM_RENDERER): Django's templates, with the plainest widgets
written out in Python.

A route page draws about a hundred inputs (inline threshold rows, the empty row the admin
keeps for "Add another", hidden ids, delete boxes); each one is two template renders
(`input.html` including `attrs.html`), ~0.3 ms apiece: ~30 ms of every route page. The
Python version below writes the same markup, attribute for attribute in the same order
(tests/test_form_renderer.py holds it against the templates), in well under 0.05 ms.
"""

from django.forms.renderers import DjangoTemplates
from django.utils.html import conditional_escape

# Django's widget templates that are `input.html` and nothing else.
INPUT_TEMPLATES = frozenset(
    f"django/forms/widgets/{name}.html"
    for name in (
        "input",
        "text",
        "number",
        "email",
        "url",
        "password",
        "tel",
        "search",
        "color",
        "hidden",
        "checkbox",
        "date",
        "datetime",
        "time",
    )
)
TEXTAREA_TEMPLATE = "django/forms/widgets/textarea.html"


def render_attrs(attrs):
    """django/forms/widgets/attrs.html: ` name="value"`, ` name` for True, nothing for False."""
    return "".join(
        f" {conditional_escape(name)}"
        + ("" if value is True else f'="{conditional_escape(value)}"')
        for name, value in attrs.items()
        if value is not False
    )


def render_input(widget):
    """django/forms/widgets/input.html."""
    value = widget["value"]
    return (
        f'<input type="{conditional_escape(widget["type"])}"'
        f' name="{conditional_escape(widget["name"])}"'
        + ("" if value is None else f' value="{conditional_escape(value)}"')
        + f"{render_attrs(widget['attrs'])}>"
    )


def render_textarea(widget):
    """django/forms/widgets/textarea.html."""
    value = widget["value"]
    return (
        f'<textarea name="{conditional_escape(widget["name"])}"{render_attrs(widget["attrs"])}>\n'
        f"{conditional_escape(value) if value else ''}</textarea>"
    )


class FastRenderer(DjangoTemplates):
    """DjangoTemplates, except the input and textarea widgets (same markup, in Python)."""

    def render(self, template_name, context, request=None):
        if template_name in INPUT_TEMPLATES:
            return render_input(context["widget"])
        if template_name == TEXTAREA_TEMPLATE:
            return render_textarea(context["widget"])
        return super().render(template_name, context, request)
