"""Reading a Prometheus exposition in tests: parsed by prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Exposition:
    """The samples of one scrape, by sample name (``http_requests_total``, ``..._bucket``)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]
    types: dict[str, str]  # family name -> counter, gauge, histogram...

    @classmethod
    def parse(cls, text: str) -> Exposition:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples, types)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
        return sum(
            value
            for found, value in self.samples.get(name, [])
            if all(found.get(key) == wanted for key, wanted in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            all(found.get(key) == wanted for key, wanted in labels.items())
            for found, _ in self.samples.get(name, [])
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {found[label] for found, _ in self.samples.get(name, []) if label in found}


def scrape(url: str) -> Exposition:
    """GET ``url`` (a ``/metrics``) and parse it; fails unless it is the text format."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Exposition.parse(response.text)


async def ascrape(http: httpx.AsyncClient, path: str = "/metrics") -> Exposition:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Exposition.parse(response.text)
