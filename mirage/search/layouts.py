"""Block layouts: the grid, loop and maps a graph-defined kernel is searched under.

A layout assigns labels (see ``labels.py``) to grid axes and to the for-loop, with split counts
derived from the label extents and the target GPU: batch labels are split one block per index;
other output labels may be split into tiles of ``TILE_CHOICES``; one reduced label may also be
split across blocks (each block then produces a partial result that a later kernel combines);
the loop walks one reduced label in chunks of ``LOOP_TILES``. Every operand dim carrying a grid
label is split by that axis (imap) and the dim carrying the loop label is walked by the loop
(fmap). Layouts whose input tiles alone overflow shared memory, or whose grid exceeds
``max_blocks_per_sm`` blocks per SM, are not generated.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from mirage.ir import DTYPE_BYTES, Target, TensorType
from mirage.search.labels import DimLabel

TILE_CHOICES = (16, 32, 64, 128, 256)
# Tiles below tl.dot's 16 rows, down to one row per block: only for kernels without a
# contraction (``small_tiles``: an RMS kernel, a kernel combining partial results), which pay
# no padding for them.
SMALL_TILES = (1, 2, 4, 8)
LOOP_TILES = (16, 32, 64, 128, 256, 512)
SPLIT_CHOICES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Operand:
    """A kernel tensor offered to a graph-defined op: its type and per-dim labels."""

    type: TensorType
    labels: tuple[DimLabel, ...]


@dataclass(frozen=True)
class Layout:
    grid: tuple[int, int, int]
    grid_labels: tuple[str | None, str | None, str | None]
    forloop_range: int
    loop_label: str | None
    split_label: str | None  # a reduced label split across blocks: outputs are partial
    imaps: tuple[tuple[int | None, int | None, int | None], ...]
    fmaps: tuple[int | None, ...]

    @property
    def num_blocks(self) -> int:
        return math.prod(self.grid)

    def class_key(self, operands: list[Operand]) -> tuple:
        """Layouts with equal keys differ only in extents: the same bodies fit all of them
        (up to shape rules at particular extents, which ``block.instantiate`` re-checks)."""
        unit_dims = []
        for op, imap, fmap in zip(operands, self.imaps, self.fmaps, strict=True):
            shape = list(op.type.shape)
            for axis, d in enumerate(imap):
                if d is not None:
                    shape[d] //= self.grid[axis]
            if fmap is not None:
                shape[fmap] //= self.forloop_range
            unit_dims.append(tuple(s == 1 for s in shape))
        return (self.grid_labels, self.split_label, self.loop_label, self.imaps, self.fmaps,
                tuple(unit_dims))


def _dim_with(op: Operand, label: str, outer_only: bool = False) -> int | None:
    for d, factors in enumerate(op.labels):
        if factors[0][0] == label and (len(factors) == 1 or outer_only):
            return d
    return None


def _extent(operands: list[Operand], label: str) -> int:
    for op in operands:
        for factors in op.labels:
            if factors[0][0] == label:
                return factors[0][1]
    return 1


def _splits(extent: int, tiles) -> list[int]:
    """Ways to split ``extent`` across blocks: not at all, or into tiles of ``tiles``."""
    out = {1}
    for t in tiles:
        if t < extent and extent % t == 0:
            out.add(extent // t)
    return sorted(out)


def _input_tile_bytes(operands, imaps, fmaps, grid, r) -> int:
    total = 0
    for op, imap, fmap in zip(operands, imaps, fmaps, strict=True):
        shape = list(op.type.shape)
        for axis, d in enumerate(imap):
            if d is not None:
                shape[d] //= grid[axis]
        if fmap is not None:
            shape[fmap] //= r
        total += math.prod(shape) * DTYPE_BYTES[op.type.dtype]
    return total


def enumerate_layouts(operands: list[Operand], output_labels: frozenset[str],
                      batch_labels: frozenset[str], reducible: frozenset[str], target: Target,
                      allow_split: bool = True, max_blocks_per_sm: int = 16,
                      whole: frozenset[str] = frozenset(), small_tiles: bool = False
                      ) -> list[Layout]:
    """Every layout for ``operands``: grids over output labels (batch labels split fully), an
    optional split of one reducible label, and a loop over one reducible label.

    Labels in ``whole`` (output labels the program also reduces, like the hidden dim of an
    rms_norm'ed output) are neither tiled by the grid nor walked by the loop in a layout
    without a split: each block must see all of such a label to produce its final output
    (a grid tile only sees part of the reduction, a loop leaves an output tile narrower than
    the output). With ``small_tiles`` output labels may also be split into ``SMALL_TILES``
    (a kernel that computes a divisor per row: one block per row)."""
    present = {f[0] for op in operands for d in op.labels for f in d[:1] if f[1] > 1}
    batch = sorted(batch_labels & present)
    parallel = sorted((output_labels & present) - batch_labels)
    loopable = sorted(reducible & present)
    max_blocks = max_blocks_per_sm * target.num_sms
    layouts = []
    tiles = (SMALL_TILES if small_tiles else ()) + TILE_CHOICES
    parallel_choices = [[(lab, s) for s in _splits(_extent(operands, lab), tiles)]
                        for lab in parallel]
    split_choices = [(None, 1)] + ([(lab, s) for lab in loopable for s in SPLIT_CHOICES
                                    if _extent(operands, lab) % s == 0
                                    and _extent(operands, lab) // s >= LOOP_TILES[0]]
                                   if allow_split else [])
    for par in itertools.product(*parallel_choices):
        for split_label, split in split_choices:
            axes = [(lab, _extent(operands, lab)) for lab in batch]
            axes += [(lab, s) for lab, s in par if s > 1]
            if split > 1:
                if any(lab == split_label for lab, _ in axes):
                    continue  # one label on two grid axes: both would split the same dim
                axes.append((split_label, split))
            if len(axes) > 3:
                continue
            axes += [(None, 1)] * (3 - len(axes))
            grid = tuple(s for _, s in axes)
            if math.prod(grid) > max_blocks:
                continue
            if split == 1 and any(lab in whole for lab, s in axes if s > 1):
                continue
            for loop_label, r in _loop_choices(operands, loopable, split_label, split):
                if split == 1 and r > 1 and loop_label in whole:
                    continue
                layout = _make(operands, axes, grid, loop_label, r, split_label)
                if layout is None:
                    continue
                tiles = _input_tile_bytes(operands, layout.imaps, layout.fmaps, grid, r)
                if tiles <= target.smem_per_block:
                    layouts.append(layout)
    return layouts


def _loop_choices(operands, loopable, split_label, split):
    yield None, 1
    for lab in loopable:
        extent = _extent(operands, lab) // (split if lab == split_label else 1)
        composite = any(len(d) > 1 and d[0][0] == lab for op in operands for d in op.labels)
        if composite:  # walk the concatenated partial results one block-result at a time
            yield lab, extent
            continue
        for tile in LOOP_TILES:
            if tile < extent and extent % tile == 0:
                yield lab, extent // tile


def _make(operands, axes, grid, loop_label, r, split_label) -> Layout | None:
    imaps, fmaps = [], []
    for op in operands:
        imap = []
        for lab, size in axes:
            d = None if lab is None or size == 1 else _dim_with(op, lab)
            if d is not None and op.type.shape[d] % size:
                return None
            imap.append(d)
        fmap = None if loop_label is None else _dim_with(op, loop_label, outer_only=True)
        if fmap is not None:
            after_grid = op.type.shape[fmap] // math.prod(
                s for (lab, s), d in zip(axes, imap, strict=True) if d == fmap)
            if after_grid % r:
                return None
        imaps.append(tuple(imap))
        fmaps.append(fmap)
    if loop_label is not None and all(f is None for f in fmaps):
        return None
    labels = tuple(lab if s > 1 else None for lab, s in axes)
    return Layout(grid, labels, r, loop_label, split_label, tuple(imaps), tuple(fmaps))
