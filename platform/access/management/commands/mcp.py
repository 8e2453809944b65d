import os
from typing import Any

import anyio
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.agents import build_server, http_server
from accounts.services import api_key_authenticate


class Command(BaseCommand):
    help = (
        "Serve the MCP server for AI agents: over stdio with the API key in TRIBUTE_API_KEY (the default), "
        "or over streamable HTTP with --http, where each request sends its key as a bearer token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["http"]:
            anyio.run(http_server(host=options["host"], port=options["port"]).serve)
            return
        secret = os.environ.get("TRIBUTE_API_KEY", "")
        if api_key_authenticate(secret=secret) is None:
            raise CommandError("Set TRIBUTE_API_KEY to an active API key (trb_...).")
        build_server(api_key_secret=secret).run("stdio")
