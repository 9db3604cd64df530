"""The web process serves every page and API call without importing torch or evidently (issue 8):
training specs are validated by the torch-free ``runners.specs``, and torch and evidently load only
in the worker functions that train, predict or report. A cold import of torch costs about 20 s on
a busy machine and hundreds of MB in every web worker."""

from __future__ import annotations

import subprocess
import sys

from django.conf import settings


def test_the_url_conf_and_every_view_module_load_without_torch_or_evidently():
    code = (
        "import os, sys, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
        "django.setup()\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns\n"
        "print(sorted(name for name in ('torch', 'evidently') if name in sys.modules))\n"
    )

    result = subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip().splitlines()[-1] == "[]"
