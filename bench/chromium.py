"""Debian's Chromium driven by Playwright, kept on 127.0.0.1: its flags, and `.local` candidates made by hand.

Shared by the real-browser tests (tests/e2e) and the browser benchmark. Chromium comes from Debian; Playwright
only drives it through `executable_path` and never downloads a browser. The flags keep it from reaching
anything but 127.0.0.1: no background networking or component updates, host lookups NOTFOUND, and no mDNS.

mDNS: by default Chromium hides its addresses behind random `<uuid>.local` names and answers multicast
queries for them, which is traffic off the machine. So the browser runs with that hiding off
(`WebRtcHideLocalIpsWithMdns` disabled) and `hide_addresses_like_a_browser()` rewrites the candidates the page
posts to `.local` names, exactly as a default browser would send them; the server must cope with them without
resolving anything. Chromium keeps only the last `--disable-features=` flag and Playwright passes its own
list first, so Playwright's entries are repeated here.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

__all__ = ["CHROMIUM", "FLAGS", "hide_addresses_like_a_browser"]

CHROMIUM = "/usr/bin/chromium"

_PLAYWRIGHT_DISABLED = (
    "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,ThirdPartyStoragePartitioning,"
    "AvoidCorsURLLoaderRestartOnRedirect,OptimizationHints,NetworkTimeServiceQuerying,PreconnectToSearch"
)

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    f"--disable-features={_PLAYWRIGHT_DISABLED},WebRtcHideLocalIpsWithMdns",
]

_CANDIDATE_ADDRESS = re.compile(r"^((?:a=)?candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", re.MULTILINE)


def _hide(text: str, names: dict[str, str]) -> str:
    def swap(match: re.Match[str]) -> str:
        address = match.group(2)
        name = names.setdefault(address, f"{uuid.uuid4()}.local")
        return f"{match.group(1)}{name}{match.group(3)}"

    return _CANDIDATE_ADDRESS.sub(swap, text)


async def hide_addresses_like_a_browser(target: Any) -> dict[str, str]:
    """Rewrite the host candidates a Playwright page or context (`target`) posts to the streams API (SDP
    answers and trickled candidates) to `<uuid>.local` names, one per address, as Chromium's default mDNS
    hiding does. Returns the names used (address -> name), filled in as candidates go out."""
    names: dict[str, str] = {}

    async def rewrite(route: Any) -> None:
        request = route.request
        body = request.post_data
        if request.method != "POST" or not body:
            await route.continue_()
            return
        data = json.loads(body)
        if isinstance(data.get("candidate"), str):
            data["candidate"] = _hide(data["candidate"], names)
        answer = data.get("answer")
        if isinstance(answer, dict) and isinstance(answer.get("sdp"), str):
            answer["sdp"] = _hide(answer["sdp"], names)
        await route.continue_(post_data=json.dumps(data))

    await target.route(re.compile(r"/talks/streams/[^/]+/(ice|sdp)$"), rewrite)
    return names
