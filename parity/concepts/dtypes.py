"""Concepts of dtype behaviour: what each twin computes for inputs other than float32/float64."""
from __future__ import annotations

from parity.concept import Concept

CONCEPTS: list[Concept] = []
