"""The evidently report is HTML built from uploaded data: nothing in the data may run as code."""

from html.parser import HTMLParser

import numpy as np
import pandas as pd

from monitoring.drift import compare

PAYLOAD = "</script><script>document.title='pwned'</script><!--"


class _Scripts(HTMLParser):
    """The text of every <script> element, as a browser's tokenizer splits them."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._inside = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.scripts[-1] += data


def _scripts(html: str) -> list[str]:
    parser = _Scripts()
    parser.feed(html)
    return parser.scripts


def test_values_and_column_names_cannot_break_out_of_the_reports_scripts():
    rng = np.random.default_rng(3)
    name = f"city{PAYLOAD}"
    reference = pd.DataFrame({name: rng.choice(["paris", PAYLOAD], 3000), "x": rng.normal(0, 1, 3000)})
    current = pd.DataFrame({name: rng.choice(["paris", "lyon"], 3000), "x": rng.normal(0, 1, 3000)})
    clean = compare(
        reference.replace(PAYLOAD, "nice").rename(columns={name: "city"}),
        current.rename(columns={name: "city"}),
        ["city", "x"],
    )

    result = compare(reference, current, [name, "x"])

    scripts = _scripts(result.html)
    # The payload opened no script element of its own: the same scripts as a clean report.
    assert len(scripts) == len(_scripts(clean.html))
    assert not any(script.startswith("document.title") for script in scripts)
    # The verdicts still name the column as uploaded.
    assert [column.column for column in result.columns] == [name, "x"]
    assert [column.is_drifted for column in result.columns] == [True, False]
