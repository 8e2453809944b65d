"""Lay out a work's derivative lineage as a layered graph, drawn by a template as inline SVG.

The work sits on the bottom row; each ancestor sits one row above the lowest of its children, so every
edge points upwards from a derivative to the work it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.selectors import Lineage
from dashboard.plain_words import percent

NODE_WIDTH = 190
NODE_HEIGHT = 52
GAP_X = 28
GAP_Y = 56
MARGIN = 12
TITLE_CHARS = 24


@dataclass(frozen=True)
class Node:
    work_id: int
    title: str
    subtitle: str
    x: int
    y: int
    is_subject: bool

    @property
    def centre_x(self) -> int:
        return self.x + NODE_WIDTH // 2


@dataclass(frozen=True)
class Link:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str

    @property
    def label_x(self) -> int:
        return (self.x1 + self.x2) // 2

    @property
    def label_y(self) -> int:
        return (self.y1 + self.y2) // 2


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    nodes: list[Node]
    links: list[Link]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def layout(lineage: Lineage) -> Graph:
    subject = lineage["work"]
    works = {w.pk: w for w in [subject, *lineage["ancestors"]]}
    parents: dict[int, list[int]] = {}
    for edge in lineage["edges"]:
        parents.setdefault(edge["child"], []).append(edge["parent"])
    depth = {subject.pk: 0}
    frontier = [subject.pk]
    # Longest path from the subject: relax until stable (the graph is acyclic and small, at most 16 parents
    # per work).
    while frontier:
        following = []
        for child in frontier:
            for parent in parents.get(child, []):
                if depth.get(parent, -1) < depth[child] + 1:
                    depth[parent] = depth[child] + 1
                    following.append(parent)
        frontier = following
    rows: dict[int, list[int]] = {}
    for work_id, level in depth.items():
        rows.setdefault(level, []).append(work_id)
    levels = max(rows) + 1
    widest = max(len(ids) for ids in rows.values())
    width = 2 * MARGIN + widest * NODE_WIDTH + (widest - 1) * GAP_X
    height = 2 * MARGIN + levels * NODE_HEIGHT + (levels - 1) * GAP_Y
    nodes: dict[int, Node] = {}
    for level, ids in rows.items():
        ids.sort()
        row_width = len(ids) * NODE_WIDTH + (len(ids) - 1) * GAP_X
        left = (width - row_width) // 2
        y = MARGIN + (levels - 1 - level) * (NODE_HEIGHT + GAP_Y)
        for index, work_id in enumerate(ids):
            work = works[work_id]
            nodes[work_id] = Node(
                work_id=work_id,
                title=_short(work.title),
                subtitle=f"{work.get_kind_display()} · {work.created_by.public_name}",
                x=left + index * (NODE_WIDTH + GAP_X),
                y=y,
                is_subject=work_id == subject.pk,
            )
    links = [
        Link(
            x1=nodes[edge["child"]].centre_x,
            y1=nodes[edge["child"]].y,
            x2=nodes[edge["parent"]].centre_x,
            y2=nodes[edge["parent"]].y + NODE_HEIGHT,
            label=percent(edge["share_bps"]),
        )
        for edge in lineage["edges"]
        if edge["child"] in nodes and edge["parent"] in nodes
    ]
    return Graph(width=width, height=height, nodes=list(nodes.values()), links=links)
