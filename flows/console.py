"""Flow runs' console log, printed as written.

Prefect's console handler prints each record through a Rich console that replaces emoji codes
(a source folder `ledger` in `repo@abc123:ledger: 2 lint finding(s)` printed a 📒) and, with
PREFECT_LOGGING_MARKUP, reads `[bold]` as a style. Conveyor's messages quote user text (names,
paths, YAML values), so its flow runs log through `PlainConsoleHandler` instead: Prefect's
colours for levels, URLs and states stay, the message itself is never interpreted. The records
sent to the Prefect server are raw text already and need nothing.

Prefect builds its handlers from logging.yml, where an environment variable can name another
class (`PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS`); `PLAIN_CONSOLE_ENVIRONMENT`
(conveyor.adapters.prefect_api) is that setting, for the processes that run Conveyor's flows
(`python -m flows`, `deployments.serve`, the workers, the Kubernetes pool's template).
"""

from __future__ import annotations

import logging
import os

from prefect.logging.configuration import setup_logging
from prefect.logging.handlers import PrefectConsoleHandler

from conveyor.adapters.prefect_api import PLAIN_CONSOLE_ENVIRONMENT


class PlainConsoleHandler(PrefectConsoleHandler):
    """Prefect's console handler, with messages printed without markup or emoji codes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), soft_wrap=True, markup=False, emoji=False)
        except RecursionError:  # as logging.StreamHandler.emit: never swallow it
            raise
        except Exception:
            self.handleError(record)


def use_plain_console() -> None:
    """Log this process's flow runs, and those of the processes it starts, through
    `PlainConsoleHandler` (unless the environment already names a console handler).

    Logging is configured again only when it is not in place already: where the environment
    named the handler before Prefect was imported (`python -m flows`, a work pool's runs),
    Prefect's own configuration at import made the same one, and making it again would cost
    about 0.05 CPU second for nothing."""
    for name, value in PLAIN_CONSOLE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not any(isinstance(h, PlainConsoleHandler) for h in logging.getLogger().handlers):
        setup_logging(incremental=False)
