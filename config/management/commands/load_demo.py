import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.demo import DEMO_PASSWORD, DemoTimeout, run_demo
from governance.models import RegisteredModel


class Command(BaseCommand):
    help = (
        "Load the demo workspace: bike-sharing data, a trained model, predictions, a drift check, an alert."
    )

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait for each job.")
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when the demo model already has versions."
        )

    def handle(self, *args, timeout, if_empty, **options):
        # While it exists, every page says the demo is loading (config.context.demo_loading):
        # the web server answers before the demo's users and objects exist (issue 14).
        marker = Path(settings.STEWARD_DEMO_LOADING_MARKER)
        if if_empty and RegisteredModel.objects.filter(name="bike-demand", versions__isnull=False).exists():
            marker.unlink(missing_ok=True)  # one left by a load_demo that was killed
            self.stdout.write("demo workspace already loaded")
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{os.getpid()}\n")
        try:
            run_demo(say=self.stdout.write, timeout_s=timeout)
        except (DemoTimeout, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            marker.unlink(missing_ok=True)
        self.stdout.write(self.style.SUCCESS(f"demo loaded; logins use the password {DEMO_PASSWORD!r}"))
