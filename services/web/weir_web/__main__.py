"""`weir-web`: serve the HTTP API until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

from weir import logs
from weir.config import ConfigError, Settings

from weir_web.app import nats_backends, web_server
from weir_web.config import WebSettings


async def serve(web: WebSettings, settings: Settings, secret_key: bytes | None) -> None:
    await web_server(web, nats_backends(settings, secret_key)).serve()


def main() -> None:
    try:
        settings = Settings.from_env()
        web = WebSettings.from_settings(settings)
    except ConfigError as exc:
        print(f"weir-web: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log = logs.setup("weir.web", settings.log_level)
    log.info("weir-web listening on http://%s:%d/api/v1", web.host, web.port)
    asyncio.run(serve(web, settings, settings.secret_key))


if __name__ == "__main__":
    main()
