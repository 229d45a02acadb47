"""Distances on the earth's surface, for "nearest station" choices and attributes."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for station selection)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def centroid(rings: list[list[tuple[float, float]]]) -> tuple[float, float] | None:
    """The area-weighted centroid (lon, lat) of polygons given by their outer rings, in the plane of the degrees.

    Plenty for a Thing's footprint, a park or a district (the error of treating degrees as flat is far below the
    size of the shape). Degenerate rings (no area: a line, a point, repeated vertices) give the mean of the
    vertices instead; None for no vertices at all.
    """
    points = [p for ring in rings for p in ring]
    if not points:
        return None
    x0, y0 = points[0]  # relative coordinates keep the cross products precise
    area = cx = cy = 0.0
    for ring in rings:
        for (xa, ya), (xb, yb) in zip(ring, ring[1:] + ring[:1], strict=True):
            ax, ay, bx, by = xa - x0, ya - y0, xb - x0, yb - y0
            cross = ax * by - bx * ay
            area += cross
            cx += (ax + bx) * cross
            cy += (ay + by) * cross
    if abs(area) < 1e-12:
        return sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)
    return x0 + cx / (3 * area), y0 + cy / (3 * area)
