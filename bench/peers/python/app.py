"""The Python peer over HTTP: FastAPI, POST /v1/events doing the peer's work (validate the
envelope and the payload, render every channel) and answering 202, as ours does after it has
also claimed the event id, recorded the event and queued it (which this peer does not do).

Run (as bench/peers/run.sh does, with the settings uvicorn's documentation recommends for
throughput: uvloop, httptools, one worker per core, no access log):
    NOTIFY_CATALOG_DIR=catalog NOTIFY_API_KEYS=key uvicorn app:app --app-dir bench/peers/python \
        --workers 2 --loop uvloop --http httptools --no-access-log --log-level warning
"""

import datetime
import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from peer import Invalid, Peer

peer = Peer(os.environ.get("NOTIFY_CATALOG_DIR", "catalog"))
keys = {k.strip() for k in os.environ.get("NOTIFY_API_KEYS", "").split(",") if k.strip()}
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/events", status_code=202)
async def submit_event(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in keys:
        return JSONResponse({"title": "Unauthorized"}, status_code=401)
    body = await request.body()
    try:
        event, event_type, payload = peer.validate(body)
        wanted = [event.locale] if event.locale else []
        peer.render(event, event_type, payload, wanted)
    except Invalid as e:
        return JSONResponse({"title": "Invalid event", "errors": str(e.errors)}, status_code=e.status)
    location = f"/v1/events/{event.event_id}"
    return Response(
        json.dumps({
            "event_id": event.event_id,
            "event_type": event.event_type,
            "status": "accepted",
            "priority": event.priority or event_type.priority,
            "accepted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "links": {"self": location},
        }),
        status_code=202,
        media_type="application/json",
        headers={"location": location},
    )
