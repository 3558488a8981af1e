"""The new-project form: model, evaluator and selection settings."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from workbench.tui.data.backend import NewProject, model_path_error
from workbench.tui.data.ratios import parse_ratio, ratio_error


def name_error(text: str, existing: set[str]) -> str | None:
    name = text.strip()
    if not name:
        return "Enter a project name."
    if name in existing:
        return f"A project named '{name}' exists; choose another name."
    return None


def integer_error(text: str, what: str, minimum: int, optional: bool = False) -> str | None:
    cleaned = text.strip()
    if optional and not cleaned:
        return None
    try:
        value = int(cleaned)
    except ValueError:
        return f"Expected {what} as a whole number of at least {minimum}. Received: '{cleaned}'"
    if value < minimum:
        return f"Expected {what} of at least {minimum}. Received: {value}"
    return None


def spec_error(text: str) -> str | None:
    """Check the spec's form here; the worker checks that it resolves before creating the project."""
    from workbench.evaluators import EvaluatorSpecError, parse_spec

    try:
        parse_spec(text)
    except EvaluatorSpecError as error:
        return str(error)
    return None


# (input id, label, placeholder)
FIELDS = (
    ("name", "Name", "e.g. resnet-half"),
    ("model", "Model file", "path/to/model.keras (or .h5)"),
    ("evaluator", "Evaluator", "accuracy:eval.npz or file.py:function"),
    ("target", "Target ratio", "in (0, 1], e.g. 0.5"),
    ("candidates", "Candidates", "N: ratios i/N for i = 1 .. N-1"),
    ("multiplicity", "Multiplicity", "ranks rounded up to a multiple of this"),
    ("iterations", "Eval iterations", "empty: the whole evaluation set"),
)


class NewProjectDialog(ModalScreen["NewProject | None"]):
    """Collect and validate the fields of a new project; dismiss with a `NewProject` or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new-project.cancel"),
        Binding("ctrl+s", "create", "Create", id="new-project.create"),
    ]
    HELP = (
        "Fill in the fields; Tab moves between them. Enter in the last field or Ctrl+S creates the "
        "project and starts the layer analysis as a background job. Escape closes the form."
    )

    def __init__(self, existing: set[str], defaults: dict[str, str] | None = None):
        super().__init__()
        self.existing = existing
        self.defaults = {"target": "0.5", "candidates": "10", "multiplicity": "1", **(defaults or {})}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -wide", id="new-project"):
            yield Label("New project", classes="dialog-title")
            for field_id, label, placeholder in FIELDS[:3]:
                yield from self._field(field_id, label, placeholder)
            with Horizontal(classes="form-row"):
                yield Label("Cost metric", classes="form-label")
                yield Select(
                    [("MACs (mac)", "mac"), ("weights (memory)", "memory")],
                    value=self.defaults.get("metric", "mac"),
                    allow_blank=False,
                    compact=True,
                    id="metric",
                )
            for field_id, label, placeholder in FIELDS[3:]:
                yield from self._field(field_id, label, placeholder)
            yield Label("", classes="dialog-error", id="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create (ctrl+s)", variant="primary", compact=True, id="create")
                yield Button("Cancel (esc)", compact=True, id="cancel")

    def _field(self, field_id: str, label: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            yield Input(value=self.defaults.get(field_id, ""), placeholder=placeholder, compact=True, id=field_id)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = getattr(self.app, "cursor_blink", True)
        self.query_one("#name", Input).focus()

    def field_errors(self) -> dict[str, str]:
        """Return the error of every invalid field, keyed by input id."""
        values = {field_id: self.query_one(f"#{field_id}", Input).value for field_id, _, _ in FIELDS}
        checks = {
            "name": name_error(values["name"], self.existing),
            "model": model_path_error(values["model"]),
            "evaluator": spec_error(values["evaluator"]),
            "target": ratio_error(values["target"], "target ratio"),
            "candidates": integer_error(values["candidates"], "candidates", 2),
            "multiplicity": integer_error(values["multiplicity"], "multiplicity", 1),
            "iterations": integer_error(values["iterations"], "eval iterations", 1, optional=True),
        }
        return {field_id: message for field_id, message in checks.items() if message}

    def request(self) -> NewProject:
        """Build the request from fields that passed `field_errors`."""

        def value(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value.strip()

        return NewProject(
            name=value("name"),
            model_path=value("model"),
            evaluator_spec=value("evaluator"),
            metric=str(self.query_one("#metric", Select).value),
            target=parse_ratio(value("target"), "target ratio"),
            candidates=int(value("candidates")),
            multiplicity=int(value("multiplicity")),
            eval_iterations=int(value("iterations")) if value("iterations") else None,
        )

    def show_error(self, field_id: str | None, message: str) -> None:
        error = self.query_one("#error", Label)
        error.update(message)
        error.set_class(bool(message), "-visible")
        for input_widget in self.query(Input):
            input_widget.set_class(input_widget.id == field_id, "-invalid")

    def action_create(self) -> None:
        errors = self.field_errors()
        if errors:
            field_id, message = next(iter(errors.items()))
            self.show_error(field_id, message)
            self.query_one(f"#{field_id}", Input).focus()
            return
        self.dismiss(self.request())

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        ids = [field_id for field_id, _, _ in FIELDS]
        if event.input.id == ids[-1]:
            self.action_create()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.dismiss(None)

