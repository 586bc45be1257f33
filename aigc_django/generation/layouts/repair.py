"""Repair: turn a sampled layout into one that keeps the composer's hard constraints.

A sample from the layout VAE is a wish: roughly where each element goes and how big it is.
:func:`repair` makes it a real :class:`~aigc_django.generation.compose.Layout` or rejects
it:

1. every element is fitted into its sampled box with the composer's own tools: text by
   ``fit_text`` (the headline and body within 80%..115% of the size the fixed layout uses,
   so a sampled layout never shrinks the copy much), the call to action by ``_cta_button``,
   product images and the logo by ``_contain`` (aspect kept, at least the composer's
   minimum product size);
2. boxes are moved inside the safe margins (``compose.margin``);
3. overlapping boxes are pushed apart along the shorter way out (products and the logo
   shrink a little when pushing alone does not do), keeping a small gap;
4. alignment: the text column and the product images are lined up when they nearly are
   (within 10%), edges and centres within 5% of each other are snapped together, and when
   still no two elements share an edge or centre line the closest pair is made to; each
   move only where it makes no overlap;
5. the result is checked: nothing overlaps, nothing reaches into the margins, and every
   element the fixed layout shows is shown. Anything else is rejected (``None``), and the
   composer falls back to its fixed layout.

Contrast is not the layout's business: the composer measures the pixels under the text
boxes and adds its scrim whatever the layout.
"""

from __future__ import annotations

from aigc_django.generation import compose
from aigc_django.generation.compose import Box, Layout, TextBlock
from aigc_django.generation.layouts.encoding import NormBox, to_pixels

# Text sizes a repaired layout may use, relative to the fixed layout's.
SMALLEST_TEXT, LARGEST_TEXT = 0.8, 1.15
# Sampled boxes may grow this much to fit their content.
SLACK = 1.3
SNAP = 0.05
PUSH_ROUNDS = 80


def _grow(box: Box, size: tuple[int, int], factor: float) -> Box:
    """``box`` grown by ``factor`` around its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = (box[2] - box[0]) * factor, (box[3] - box[1]) * factor
    return (round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2))


def _centred(width: int, height: int, around: Box) -> Box:
    cx, cy = (around[0] + around[2]) // 2, (around[1] + around[3]) // 2
    x0, y0 = cx - width // 2, cy - height // 2
    return (x0, y0, x0 + width, y0 + height)


def _inside(box: Box, area: Box) -> Box | None:
    """``box`` moved (not resized) into ``area``; None when it is larger than the area."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w > area[2] - area[0] or h > area[3] - area[1]:
        return None
    x0 = min(max(x0, area[0]), area[2] - w)
    y0 = min(max(y0, area[1]), area[3] - h)
    return (x0, y0, x0 + w, y0 + h)


def _hits(a: Box, b: Box, sep: int) -> bool:
    return min(a[2], b[2]) + sep > max(a[0], b[0]) and min(a[3], b[3]) + sep > max(a[1], b[1])


def _colliding(boxes: dict[str, Box], sep: int) -> list[tuple[str, str]]:
    names = sorted(boxes)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if _hits(boxes[a], boxes[b], sep)
    ]


def _fit_text_in(
    text: str,
    fonts: tuple[str | None, str | None],
    box: Box,
    area: Box,
    reference: TextBlock,
    bold: bool,
    max_lines: int,
) -> TextBlock | None:
    low = max(compose.MIN_FONT_SIZE, round(reference.size * SMALLEST_TEXT))
    high = max(low, round(reference.size * LARGEST_TEXT))
    # The sampled box as it is first (the text as large as fits it), then a little larger.
    for factor in (1.0, SLACK):
        grown = _grow(box, (0, 0), factor)
        width = min(grown[2] - grown[0], area[2] - area[0])
        height = min(grown[3] - grown[1], area[3] - area[1])
        block = compose.fit_text(text, fonts, width, height, low, high, bold, max_lines)
        if block is not None:
            return block
    return None


def repair(
    proposal: dict[str, NormBox],
    size: tuple[int, int],
    copy: dict[str, str],
    product_sizes: list[tuple[int, int]],
    logo_size: tuple[int, int] | None,
    fonts: tuple[str | None, str | None],
    reference: Layout,
) -> Layout | None:
    """A layout from a sampled ``proposal`` that keeps every hard constraint, or ``None``.

    ``reference`` is the composer's fixed layout for the same banner: a repaired layout
    shows everything it shows, with text of about its sizes.
    """
    width, height = size
    m, gap = reference.margin, reference.gap
    area = (m, m, width - m, height - m)
    wanted = set(reference.boxes)
    if not wanted or reference.truncated or not wanted <= set(proposal):
        return None
    headline = " ".join(str(copy.get("headline") or "").split())
    body = " ".join(str(copy.get("body") or "").split())
    cta = " ".join(str(copy.get("cta") or "").split())
    strip = reference.mode == "strip"
    sampled = {name: to_pixels(proposal[name], size) for name in wanted}
    boxes: dict[str, Box] = {}
    blocks: dict[str, TextBlock] = {}
    movable: set[str] = set()
    cta_pad = (0, 0)
    for name in sorted(wanted):
        box = sampled[name]
        if name in ("headline", "body"):
            text = headline if name == "headline" else body
            lines = (2 if name == "headline" else 1) if strip else (3 if name == "headline" else 4)
            block = _fit_text_in(
                text, fonts, box, area, reference.blocks[name], name == "headline", lines
            )
            if block is None:
                return None
            blocks[name] = block
            placed = _centred(block.width, block.height, box)
        elif name == "cta":
            label_ref = reference.blocks["cta"]
            grown = _grow(box, size, SLACK)
            button = compose._cta_button(
                cta,
                fonts,
                label_ref.size,
                min(grown[2] - grown[0], area[2] - area[0]),
                min(grown[3] - grown[1], area[3] - area[1]),
            )
            if button is None or button[0].size < round(label_ref.size * SMALLEST_TEXT):
                return None
            label, px, py = button
            blocks["cta"] = label
            cta_pad = (px, py)
            placed = _centred(label.width + 2 * px, label.height + 2 * py, box)
        elif name == "logo":
            if logo_size is None:
                return None
            ref = reference.boxes["logo"]
            cell = (box[0], box[1], box[0] + max(box[2] - box[0], 1), box[1] + (ref[3] - ref[1]))
            found = compose._contain(logo_size, _inside(cell, area) or cell, "center")
            if found is None:
                return None
            placed = _centred(found[2] - found[0], found[3] - found[1], box)
            movable.add(name)
        else:
            index = int(name.split("_")[1])
            if index >= len(product_sizes):
                return None
            found = compose._contain(product_sizes[index], box)
            if found is None:
                return None
            placed = found
            movable.add(name)
        moved = _inside(placed, area)
        if moved is None:
            return None
        boxes[name] = moved
    minimum = {name: _minimum_side(name, reference, size) for name in boxes}
    sep = max(4, gap // 2)
    if not _separate(boxes, area, sep, movable, minimum):
        return None
    _align_groups(boxes, area, sep, size)
    for _ in range(2):  # a second pass catches edges the first one brought close
        _snap(boxes, area, sep, size)
    _share_an_edge(boxes, area, sep)
    if _colliding(boxes, sep) or compose.outside_margin(boxes, size, m):
        return None
    for name in movable:
        box = boxes[name]
        if min(box[2] - box[0], box[3] - box[1]) < minimum[name]:
            return None
    cta_label = None
    if "cta" in boxes:
        bx, by = boxes["cta"][:2]
        label = blocks["cta"]
        cta_label = (bx + cta_pad[0], by + cta_pad[1], bx + cta_pad[0] + label.width)
        cta_label = (*cta_label, by + cta_pad[1] + label.height)
    return Layout(
        "vae",
        m,
        gap,
        boxes,
        blocks,
        cta_label,  # type: ignore[arg-type]
        {name: int(name.split("_")[1]) for name in boxes if name.startswith("product_")},
        list(reference.dropped),
        [],
    )


def _minimum_side(name: str, reference: Layout, size: tuple[int, int]) -> int:
    if name.startswith("product_"):
        floor = max(24, round(min(size) * 0.08))
        ref = reference.boxes[name]
        return min(floor, ref[2] - ref[0], ref[3] - ref[1])
    if name == "logo":
        ref = reference.boxes[name]
        return max(1, round(min(ref[2] - ref[0], ref[3] - ref[1]) * 0.6))
    return 1


def _separate(
    boxes: dict[str, Box], area: Box, sep: int, movable: set[str], minimum: dict[str, int]
) -> bool:
    """Push overlapping boxes apart (shrinking images when that is not enough)."""
    for round_ in range(PUSH_ROUNDS):
        pairs = _colliding(boxes, sep)
        if not pairs:
            return True
        for a, b in pairs:
            p, q = boxes[a], boxes[b]
            if not _hits(p, q, sep):
                continue
            push_x = min(p[2] + sep - q[0], q[2] + sep - p[0])
            push_y = min(p[3] + sep - q[1], q[3] + sep - p[1])
            pc = ((p[0] + p[2]) / 2, (p[1] + p[3]) / 2)
            qc = ((q[0] + q[2]) / 2, (q[1] + q[3]) / 2)
            if push_x <= push_y:
                step = (push_x + 1) // 2 + 1
                sign = -1 if pc[0] <= qc[0] else 1
                boxes[a] = _inside(_shift(p, sign * step, 0), area) or p
                boxes[b] = _inside(_shift(q, -sign * step, 0), area) or q
            else:
                step = (push_y + 1) // 2 + 1
                sign = -1 if pc[1] <= qc[1] else 1
                boxes[a] = _inside(_shift(p, 0, sign * step), area) or p
                boxes[b] = _inside(_shift(q, 0, -sign * step), area) or q
        if round_ >= PUSH_ROUNDS // 2:
            # Stuck against the margins: images give way a little.
            for a, b in _colliding(boxes, sep):
                for name in (a, b):
                    if name in movable:
                        shrunk = _grow(boxes[name], (0, 0), 0.92)
                        side = min(shrunk[2] - shrunk[0], shrunk[3] - shrunk[1])
                        if side >= minimum[name]:
                            boxes[name] = shrunk
    return not _colliding(boxes, sep)


def _shift(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


# Elements read as one column (aligned on x) and the product images (aligned on y).
COLUMN = ("logo", "headline", "body", "cta")
ALIGN = 0.1


def _align_groups(boxes: dict[str, Box], area: Box, sep: int, size: tuple[int, int]) -> None:
    """Line the text column up (left edges, else centres, else right edges) and the
    products (tops, else centres, else bottoms) when they are nearly lined up already
    (within 10% of the banner), where that makes no overlap."""
    products = tuple(n for n in sorted(boxes) if n.startswith("product_"))
    for axis, names in ((0, COLUMN), (1, products)):
        group = [n for n in names if n in boxes]
        if len(group) < 2:
            continue
        anchor = group[0] if axis == 1 else ("headline" if "headline" in group else group[0])
        for kind in ("lo", "mid", "hi"):
            values = {n: _edge(boxes[n], axis, kind) for n in group}
            if max(values.values()) - min(values.values()) > ALIGN * size[axis]:
                continue
            target = values[anchor]
            moved = dict(boxes)
            for name in group:
                delta = round(target - values[name])
                moved[name] = (
                    _shift(boxes[name], delta, 0) if axis == 0 else _shift(boxes[name], 0, delta)
                )
            if all(_inside(moved[n], area) == moved[n] for n in group) and not _colliding(
                moved, sep
            ):
                boxes.update(moved)
                break


def _share_an_edge(boxes: dict[str, Box], area: Box, sep: int) -> None:
    """When no two elements share an edge or a centre line, move one so that the closest
    pair does (the nearest move that makes no overlap): nothing floats unrelated."""
    names = sorted(boxes)
    if len(names) < 2:
        return
    moves = []
    for axis in (0, 1):
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for kind in ("lo", "mid", "hi"):
                    delta = _edge(boxes[a], axis, kind) - _edge(boxes[b], axis, kind)
                    if abs(delta) < 0.5:
                        return  # already shared
                    moves.append((abs(delta), axis, b, round(delta)))
                    moves.append((abs(delta), axis, a, -round(delta)))
    for _, axis, name, delta in sorted(moves):
        box = boxes[name]
        moved = _shift(box, delta, 0) if axis == 0 else _shift(box, 0, delta)
        rest = [o for n, o in boxes.items() if n != name]
        if _inside(moved, area) == moved and not any(_hits(moved, o, sep) for o in rest):
            boxes[name] = moved
            return


def _edge(box: Box, axis: int, kind: str) -> float:
    if kind == "lo":
        return box[axis]
    if kind == "hi":
        return box[axis + 2]
    return (box[axis] + box[axis + 2]) / 2


def _snap(boxes: dict[str, Box], area: Box, sep: int, size: tuple[int, int]) -> None:
    """Snap near-equal edges and centres together (and to the margins) where it is safe."""
    tolerance = (max(2, round(size[0] * SNAP)), max(2, round(size[1] * SNAP)))
    for axis in (0, 1):
        for name in sorted(boxes):
            box = boxes[name]
            lo, hi = box[axis], box[axis + 2]
            targets = [(area[axis], "lo"), (area[axis + 2], "hi")]
            for other, o in boxes.items():
                if other != name:
                    targets += [
                        (o[axis], "lo"),
                        (o[axis + 2], "hi"),
                        ((o[axis] + o[axis + 2]) / 2, "mid"),
                    ]
            best = None
            for value, kind in targets:
                here = {"lo": lo, "hi": hi, "mid": (lo + hi) / 2}[kind]
                delta = round(value - here)
                if 0 < abs(delta) <= tolerance[axis] and (best is None or abs(delta) < abs(best)):
                    best = delta
            if best is None:
                continue
            moved = _shift(box, best, 0) if axis == 0 else _shift(box, 0, best)
            rest = {k: v for k, v in boxes.items() if k != name}
            if _inside(moved, area) == moved and not any(
                _hits(moved, o, sep) for o in rest.values()
            ):
                boxes[name] = moved
