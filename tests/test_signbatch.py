"""Signatures requested within two turns of the event loop run together, each with its own result."""

import asyncio
import concurrent.futures

from tests.consumer import verify_token
from tests.httpclient import exchange
from token_exchange.signing.signbatch import SignBatch


def test_calls_of_a_turn_and_the_next_run_together_after_them_in_order():
    events = []

    def sign(name):
        events.append(f"sign {name}")
        return f"token {name}"

    async def main():
        loop = asyncio.get_running_loop()
        batch = SignBatch()
        futures = [batch.submit(sign, name) for name in "ab"]
        next_turn = loop.create_future()

        def submit_c():  # runs in the next turn
            events.append("submit c")
            next_turn.set_result(batch.submit(sign, "c"))

        loop.call_soon(submit_c)
        events.append("first turn ends")
        futures.append(await next_turn)
        results = await asyncio.gather(*futures)
        later = await batch.submit(sign, "d")  # a new batch
        return results, later

    results, later = asyncio.run(main())
    assert results == ["token a", "token b", "token c"]
    assert later == "token d"
    assert events == ["first turn ends", "submit c", "sign a", "sign b", "sign c", "sign d"]


def test_a_failing_call_fails_only_its_own_future_and_a_cancelled_one_is_skipped():
    signed = []

    def sign(name):
        if name == "bad":
            raise ValueError("no key")
        signed.append(name)
        return name

    async def main():
        batch = SignBatch()
        futures = [batch.submit(sign, name) for name in ("a", "bad", "gone", "b")]
        futures[2].cancel()
        return await asyncio.gather(*futures, return_exceptions=True)

    a, bad, gone, b = asyncio.run(main())
    assert (a, b) == ("a", "b")
    assert isinstance(bad, ValueError)
    assert isinstance(gone, asyncio.CancelledError)
    assert signed == ["a", "b"]


def test_concurrent_exchanges_share_batches_and_every_token_is_valid(start_service, integration_key):
    calls = []

    class CountingBatch(SignBatch):
        def _run_pending(self):
            calls.append(len(self._pending))
            super()._run_pending()

    service = start_service()
    key = integration_key("acme")
    # Verified once here: the exchanges below hit the verification cache.
    assert exchange(service.base_url, "integration", key.api_key).status == 200
    # Swap in a counting batch for the requests below: the handlers take it from the route's arguments.
    batch = CountingBatch()
    for rule in service.app.wildcard_router.rules:
        if "sign_batch" in (rule.target_kwargs or {}):
            rule.target_kwargs["sign_batch"] = batch
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: exchange(service.base_url, "integration", key.api_key), range(200)))
    assert [r.status for r in responses] == [200] * 200
    claims = [verify_token(service.base_url, r.json()["token"], "integration") for r in responses]
    assert len({c["jti"] for c in claims}) == 200
    assert sum(calls) == 200
    # Sixteen clients at once: some turns of the loop had more than one exchange to sign.
    assert max(calls) > 1
