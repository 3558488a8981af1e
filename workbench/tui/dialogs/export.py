"""The export dialog: an output path, with a confirmation before overwriting a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.tui.dialogs.confirm import ConfirmDialog
from workbench.tui.dialogs.value import ValueDialog


@dataclass(frozen=True)
class ExportRequest:
    """Output path of the compressed model, and whether to replace an existing file."""

    output: str
    force: bool


def export_path_error(text: str) -> str | None:
    """Return why an output path is unusable, or None."""
    cleaned = text.strip()
    if not cleaned:
        return "Enter the path of the compressed model file, e.g. model_compressed.keras."
    path = Path(cleaned).expanduser()
    if path.suffix.lower() != ".keras":
        return f"Expected a path ending in .keras. Received: '{cleaned}'"
    if path.is_dir():
        return f"'{cleaned}' is a folder; enter a file path."
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"Folder not found: '{parent}'. Create it first or choose another path."
    return None


class ExportDialog(ValueDialog):
    """Ask for the output path; dismiss with an `ExportRequest`, or None on Escape."""

    HELP = (
        "Type the path of the compressed model (.keras) and press Enter. If the file exists, "
        "a second question asks before it is replaced. The export runs as a background job."
    )

    def __init__(self, project: str, default_path: str):
        super().__init__(
            title=f"Export project {project}",
            prompt="Output file (.keras). The job rebuilds the model with the chosen ranks and measures its score.",
            value=default_path,
            validate=export_path_error,
            input_id="export-path",
        )

    def submit(self, text: str) -> None:
        path = Path(text).expanduser()
        if not path.exists():
            self.dismiss(ExportRequest(text, force=False))
            return

        def answered(overwrite: bool | None) -> None:
            if overwrite:
                self.dismiss(ExportRequest(text, force=True))
            else:
                self.show_error(f"'{text}' was kept. Enter another path, or Escape to cancel.")

        self.app.push_screen(
            ConfirmDialog("Overwrite file?", f"'{text}' exists. Replace it with the exported model?", "Overwrite", "Keep"),
            answered,
        )
