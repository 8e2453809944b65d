from typing import Any

from django.core.management.base import BaseCommand, CommandError

from contracts.chain import ChainError
from royalties.funding import chain_deposits_watch, deposit_address, deposits_configured


class Command(BaseCommand):
    help = "Credit new stablecoin deposits to the platform's deposit address (each once; safe to repeat)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not deposits_configured():
            raise CommandError("chain deposits are off: set CHAIN_DEPOSIT_ADDRESS (and CHAIN_RPC_URL)")
        try:
            result = chain_deposits_watch()
        except ChainError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"blocks {result.from_block}..{result.to_block} to {deposit_address()}: "
            f"credited {result.credited}, suspense {result.suspense}, skipped {result.skipped}, "
            f"already recorded {result.duplicates}"
        )
