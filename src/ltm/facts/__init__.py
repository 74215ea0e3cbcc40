"""Fact sets: synthetic biographies of made-up people and questions about them (`ltm facts`)."""

from ltm.facts.corpus import ATTRIBUTES, FactSet, make_facts

__all__ = ["ATTRIBUTES", "FactSet", "make_facts"]
