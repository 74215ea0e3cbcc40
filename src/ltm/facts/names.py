"""Made-up names of people, cities and universities, from the syllables in ltm/data/facts/*.yaml.

Everything is drawn from a seeded random.Random, so one seed gives one fact set. Names are unique
within a language; a pool that cannot hold as many as asked is refused rather than repeated.
"""

from __future__ import annotations

import random


class FactsError(ValueError):
    """A fact set that cannot be made as configured; the message says what to change."""


def _unique(draw, count: int, what: str) -> list[str]:
    seen: dict[str, None] = {}
    for _ in range(count * 50):
        if len(seen) == count:
            break
        seen.setdefault(draw(), None)
    if len(seen) < count:
        raise FactsError(f"only {len(seen)} distinct {what} could be made of the syllables, {count} were asked for; ask for fewer people")
    return list(seen)


def full_names(rng: random.Random, names: dict, genders: list[str]) -> list[str]:
    """One distinct full name per entry of `genders` ("m" or "f")."""
    drawn: list[str] = []
    taken: set[str] = set()
    for gender in genders:
        def draw(gender=gender) -> str:
            first = rng.choice(names["first_onsets"]) + rng.choice(names[f"first_{'male' if gender == 'm' else 'female'}_endings"])
            # Russian surnames agree with gender (-ов/-ова): the pools are aligned index by index.
            onset = rng.choice(names["surname_onsets"])
            if "surname_endings" in names:
                return f"{first} {onset}{rng.choice(names['surname_endings'])}"
            k = rng.randrange(len(names["surname_male_endings"]))
            return f"{first} {onset}{names['surname_male_endings' if gender == 'm' else 'surname_female_endings'][k]}"

        for _ in range(1000):
            name = draw()
            if name not in taken:
                break
        else:
            raise FactsError(f"no new name after 1000 draws ({len(taken)} taken); ask for fewer people")
        taken.add(name)
        drawn.append(name)
    return drawn


def cities(rng: random.Random, places: dict, count: int) -> list[str]:
    return _unique(lambda: rng.choice(places["city_onsets"]) + rng.choice(places["city_endings"]), count, "city names")


def universities(rng: random.Random, places: dict, count: int) -> list[str]:
    return _unique(lambda: rng.choice(places["university_forms"]).format(
        city=rng.choice(places["city_onsets"]) + rng.choice(places["city_endings"])), count, "university names")
