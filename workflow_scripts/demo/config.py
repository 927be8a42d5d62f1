"""The `demo:` config block: the size, heterogeneity and signal of the synthetic cohort, validated key by key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from workflow_scripts.demo.image import SIGNATURES
from workflow_scripts.demo.omics import SurvivalModel

FIELD_SCALE = 4  # level-0 px per field px of the layouts
SOURCES = ("mrna", "mirna")
TSS_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True)
class DemoTrait:
    """A planted trait: its name, the expression matrix and row it sets, and its morphological signature."""

    name: str
    source: str
    id: str
    signature: str


DEFAULT_TRAITS = (
    DemoTrait("MKI67", "mrna", "MKI67|4288", "nuclear_density"),
    DemoTrait("miR-17-5p", "mirna", "hsa-miR-17-5p", "stroma_hue"),
)


@dataclass(frozen=True)
class DemoConfig:
    """The `demo:` config block (see `from_mapping` for validation); defaults give the ~100-patient demo."""

    n_patients: int = 100
    slide_size: tuple[int, int] = (1536, 1152)
    cell_px: int = 192
    tissue_fraction: float = 0.5
    min_tissue_fraction: float = 0.5
    regions: tuple[int, int] = (2, 4)
    homogeneous_fraction: float = 0.45
    signal: float = 1.0
    tss: str = "ZZ"
    dx2_fraction: float = 0.15
    second_aliquot_fraction: float = 0.05
    normal_aliquot_fraction: float = 0.05
    no_expression_fraction: float = 0.03
    missing_survival_fraction: float = 0.02
    expression_noise: float = 0.3
    survival: SurvivalModel = SurvivalModel()
    jpeg_quality: int = 90
    traits: tuple[DemoTrait, ...] = DEFAULT_TRAITS

    @classmethod
    def from_mapping(cls, values: Mapping | None) -> DemoConfig:
        """Build from the `demo:` config dict; unknown keys or bad values raise an error naming `demo.<key>`."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown demo config key(s) {['demo.' + k for k in unknown]}; known: {sorted(known)}")
        if "slide_size" in values:
            values["slide_size"] = _pair(values["slide_size"], "slide_size", int)
        if "regions" in values:
            values["regions"] = _pair(values["regions"], "regions", int)
        if "survival" in values:
            values["survival"] = _survival_model(values["survival"])
        if "traits" in values:
            values["traits"] = tuple(_trait(t, i) for i, t in enumerate(values["traits"] or []))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the offending `demo.<key>` when a value is out of range."""
        checks = [
            (isinstance(self.n_patients, int) and self.n_patients >= 1, "n_patients", "an integer >= 1"),
            (all(s >= self.cell_px and s % FIELD_SCALE == 0 for s in self.slide_size), "slide_size",
             f"[width, height], each >= cell_px and a multiple of {FIELD_SCALE}"),
            (self.cell_px > 0 and self.cell_px % FIELD_SCALE == 0, "cell_px", f"a positive multiple of {FIELD_SCALE}"),
            (0 < self.tissue_fraction <= 1, "tissue_fraction", "in (0, 1]"),
            (0 < self.min_tissue_fraction <= 1, "min_tissue_fraction", "in (0, 1]"),
            (1 <= self.regions[0] <= self.regions[1], "regions", "[min, max] with 1 <= min <= max"),
            (0 <= self.homogeneous_fraction <= 1, "homogeneous_fraction", "in [0, 1]"),
            (0 <= self.signal <= 1, "signal", "in [0, 1]"),
            (len(self.tss) == 2 and all(c in TSS_CHARACTERS for c in self.tss), "tss",
             "two upper-case letters or digits"),
            (all(0 <= f <= 1 for f in (self.dx2_fraction, self.second_aliquot_fraction, self.normal_aliquot_fraction,
                                      self.no_expression_fraction, self.missing_survival_fraction)),
             "*_fraction", "in [0, 1]"),
            (self.expression_noise >= 0, "expression_noise", ">= 0"),
            (self.survival.median_months > 0
             and 0 <= self.survival.follow_up_months[0] <= self.survival.follow_up_months[1],
             "survival", "median_months > 0 and follow_up_months [min, max] with 0 <= min <= max"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality", "in [1, 100]"),
            (len(self.traits) >= 1, "traits", "a non-empty list"),
        ]  # fmt: skip
        for ok, key, wanted in checks:
            if not ok:
                raise ValueError(f"demo.{key} must be {wanted}; config has {getattr(self, key, None)!r}")
        names = [t.name for t in self.traits]
        ids = [(t.source, t.id) for t in self.traits]
        if len(set(names)) != len(names) or len(set(ids)) != len(ids):
            raise ValueError(f"demo.traits names and (source, id) pairs must be unique, got {self.traits}")

    @property
    def trait_names(self) -> list[str]:
        """Trait names in config order (the K axis of every truth grid)."""
        return [t.name for t in self.traits]


def _pair(value: object, key: str, kind: type) -> tuple:
    """Read a two-element list config value such as [width, height]."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"demo.{key} must be a two-element list, got {value!r}")
    return kind(value[0]), kind(value[1])


def _survival_model(value: object) -> SurvivalModel:
    """Read demo.survival {median_months, log_hazard_per_hti, follow_up_months}."""
    if not isinstance(value, Mapping):
        raise ValueError(f"demo.survival must be a mapping, got {value!r}")
    known = {f.name for f in fields(SurvivalModel)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown demo.survival key(s) {unknown}; known: {sorted(known)}")
    values = dict(value)
    if "follow_up_months" in values:
        values["follow_up_months"] = _pair(values["follow_up_months"], "survival.follow_up_months", float)
    return SurvivalModel(**{k: (float(v) if not isinstance(v, tuple) else v) for k, v in values.items()})


def _trait(value: object, index: int) -> DemoTrait:
    """Read one demo.traits entry {name, source, id, signature}."""
    wanted = {"name", "source", "id", "signature"}
    if not isinstance(value, Mapping) or set(value) != wanted:
        raise ValueError(f"demo.traits[{index}] must have exactly the keys {sorted(wanted)}, got {value!r}")
    trait = DemoTrait(**{k: str(v) for k, v in value.items()})
    if trait.source not in SOURCES:
        raise ValueError(f"demo.traits[{index}].source must be one of {SOURCES}, got {trait.source!r}")
    if trait.signature not in SIGNATURES:
        raise ValueError(f"demo.traits[{index}].signature must be one of {SIGNATURES}, got {trait.signature!r}")
    return trait
