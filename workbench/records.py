"""Layer records: one row of the layer database, free of TensorFlow.

The engine fills them from a live model (`workbench.engine.layers.analyze_model`);
the store keeps them as JSON, and the terminal app costs any rank from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.costs import ConvGeometry, CostItem


@dataclass
class LayerRecord:
    """Facts about one weighted layer of a model.

    `name` is the layer's path: the layer name, prefixed by the names of the
    nested sub-models that contain it, joined with '/'. Heights and widths
    (`input_hw`, `output_hw`) are read in the layer's data_format. `macs` and
    `memory` are the original costs (bias excluded from memory); `params`
    counts every weight of the layer, bias included.
    """

    name: str
    class_name: str
    eligible: bool
    reason: str | None = None
    kernel_size: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    padding: str | None = None
    dilation_rate: tuple[int, ...] | None = None
    groups: int | None = None
    data_format: str | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    input_shape: tuple | None = None
    output_shape: tuple | None = None
    input_hw: tuple[int, int] | None = None
    output_hw: tuple[int, int] | None = None
    use_bias: bool | None = None
    activation: str | None = None
    params: int = 0
    macs: int = 0
    memory: int = 0
    call_sites: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def geometry(self) -> ConvGeometry | None:
        """Cost geometry of an eligible conv; None for layers that are not split."""
        if not self.eligible:
            return None
        kernel_h, kernel_w = self.kernel_size[:2]
        return ConvGeometry(
            kernel_h=kernel_h,
            kernel_w=kernel_w,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            input_w=self.input_hw[1],
            output_h=self.output_hw[0],
            output_w=self.output_hw[1],
        )

    @property
    def max_rank(self) -> int | None:
        geometry = self.geometry
        return geometry.max_rank if geometry else None

    def cost_item(self) -> CostItem:
        return CostItem(self.name, self.macs, self.memory, self.geometry)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LayerRecord":
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("kernel_size", "strides", "dilation_rate", "input_shape", "output_shape", "input_hw", "output_hw"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def cost_items(records) -> list[CostItem]:
    return [record.cost_item() for record in records]
