#!/usr/bin/env python3
"""Simulator of one external channel system (docs: ../docs/channels.md, README.md here).

A real HTTP server on 127.0.0.1 that behaves like one of the six systems the gateway talks
to: it pushes sample petitions to the gateway (hotline, city-app, community-app, open311),
serves pages to poll (leader-board JSON, supervision XML), and receives the gateway's status
callbacks, recording them. Control routes under /_sim/ drive it from tests; faults can be
injected into the channel's own routes. Python 3.11 standard library only.

usage: channel_sim.py --channel NAME --port PORT [--sample FILE] [--gateway URL]
                      [--secret S] [--limit N] [--verbose]
"""
import argparse
import collections
import concurrent.futures
import hashlib
import hmac
import json
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SAMPLE = os.path.join(HERE, "../data/petitions-sample.jsonl")
DEFAULT_SECRETS = {
    "hotline": "dev-hotline-token",
    "city-app": "dev-city-app-secret",
    "community-app": "dev-community-key",
    "leader-board": "dev-leader-board-key",
    "supervision": "dev-supervision-token",
    "open311": "dev-open311-key",
}
PUSH_CHANNELS = ("hotline", "city-app", "community-app", "open311")
POLL_CHANNELS = ("leader-board", "supervision")
SOURCE_ID_FIELD = {"hotline": "gdbh", "city-app": "ticketId", "community-app": "eventNo"}
CORRUPTIONS = {
    "hotline": ("none", "bad_auth", "replay"),
    "city-app": ("none", "bad_auth", "bad_signature", "stale_timestamp", "replay"),
    "community-app": ("none", "bad_auth", "replay"),
    "open311": ("none", "bad_auth", "replay"),
}
HOTLINE_ZT = {"01", "02", "03", "04", "05", "06", "07", "08"}
CITY_APP_STATUSES = {"ACCEPTED", "DISPATCHED", "PROCESSING", "DONE", "RETURNED", "MERGED",
                     "REJECTED", "REOPENED"}
SIGNATURE_WINDOW_S = 300
LOCAL_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
CURSOR_RE = re.compile(r"^c-(0|[1-9][0-9]*)$")
PERSONAL_DATA_RE = re.compile(  # mobile, landline, ID-card number
    r"(?<!\d)(1[3-9]\d{9}|0\d{2,3}-\d{7,8}|\d{17}[\dXx])(?!\d)")
LB_RATE_PER_S = 2
MAX_BODY = 10 * 1024 * 1024
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BadRequest(Exception):
    """Raised for malformed control or API input; becomes a 400 (or the given status)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class Response:
    """One HTTP answer: status, extra headers, body bytes, and what to record as the reply."""

    def __init__(self, status, body=b"", content_type="application/json", headers=None,
                 reply=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}
        self.reply = reply


def json_response(status, obj, headers=None):
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8", headers, obj)


def xml_response(status, text, headers=None):
    return Response(status, text.encode("utf-8"), "application/xml; charset=utf-8", headers,
                    text)


def xml_error(status, message):
    return error_response("supervision", status, message)


def xml_escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_json_object(raw, what="body"):
    """Parses a JSON object from bytes; an empty body is {}."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def int_field(obj, key, default, lo=None, hi=None):
    """Reads an integer option from a control body, checking its range."""
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequest(f"{key} out of range")
    return value


def int_param(query, key, default, lo, hi):
    """Reads an integer query parameter; absent or empty gives the default."""
    text = query.get(key, "")
    if text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not lo <= int(text) <= hi:
        raise BadRequest(f"{key} must be an integer in {lo}..{hi}")
    return int(text)


def decode_body(raw):
    """Parsed JSON if the bytes are JSON, else the text (or None when empty)."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def http_send(url, method, headers, body, timeout):
    """Sends one request; returns (status or None, parsed answer, error text or None)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, decode_body(resp.read()), None
    except urllib.error.HTTPError as e:
        return e.code, decode_body(e.read()), None
    except Exception as e:  # connection refused, timeout, reset: reported, not raised
        return None, None, f"{type(e).__name__}: {e}"


def sign(secret, timestamp, body):
    """The city app's signature: lowercase hex HMAC-SHA256(secret, timestamp + "." + body)."""
    msg = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def valid_local_time(text):
    if not isinstance(text, str) or not LOCAL_TIME_RE.match(text):
        return False
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def valid_rfc3339(text):
    if not isinstance(text, str) or "T" not in text:
        return False
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def load_rows(path, channel, limit):
    """This channel's rows of the labeled sample, in file order, at most `limit`."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("channel") == channel:
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def supervision_clues(rows):
    """The clues as (submitTime, clueId, xml text), sorted by submitTime then file order."""
    clues = []
    for i, row in enumerate(rows):
        text = row["payload_xml"]
        el = ET.fromstring(text)
        clues.append((el.findtext("submitTime", ""), i, el.findtext("clueId", ""), text))
    clues.sort(key=lambda c: (c[0], c[1]))
    return [(t, cid, text) for t, _, cid, text in clues]


class Fault:
    """An injected fault: an HTTP status (with optional hotline `code`), a delay, or a drop."""

    def __init__(self, spec):
        self.status = int_field(spec, "status", None, 100, 599)
        self.code = int_field(spec, "code", None)
        self.delay_ms = int_field(spec, "delay_ms", 0, 0, 600_000)
        self.drop = bool(spec.get("drop", False))
        until = spec.get("until")
        if until not in (None, "clear"):
            raise BadRequest('until must be "clear"')
        self.remaining = None if until == "clear" else int_field(spec, "count", 1, 1)
        if self.code is not None and self.status is None:
            self.status = 200
        if self.status is None and not self.delay_ms and not self.drop:
            raise BadRequest("a fault needs status, delay_ms or drop")

    def describe(self):
        return {"status": self.status, "code": self.code, "delay_ms": self.delay_ms,
                "drop": self.drop,
                "remaining": "until clear" if self.remaining is None else self.remaining}


class Simulator:
    """The state and behaviour of one simulated channel; every mutation holds `lock`."""

    def __init__(self, channel, rows, gateway, secret):
        self.channel = channel
        self.rows = rows
        self.gateway = gateway.rstrip("/")
        self.secret = secret
        self.lock = threading.Lock()
        self.clues = supervision_clues(rows) if channel == "supervision" else []
        self.reset()

    # ----- state -----------------------------------------------------------------------

    def reset(self):
        with self.lock:
            self.received = []
            self.poll_requests = []
            self.fault = None
            self.push_pos = 0
            self.released = None  # None = every item visible
            self.poll_times = collections.deque()
            self.progress_seen = set()

    def item_count(self):
        return len(self.clues) if self.channel == "supervision" else len(self.rows)

    def visible_count(self):
        with self.lock:
            total = self.item_count()
            return total if self.released is None else min(self.released, total)

    def take_fault(self):
        """The fault for this request, if any, consuming one use of it."""
        with self.lock:
            fault = self.fault
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.fault = None
            return fault

    def record(self, kind, entry):
        with self.lock:
            (self.received if kind == "callback" else self.poll_requests).append(entry)

    def snapshot(self, kind):
        with self.lock:
            return list(self.received if kind == "callback" else self.poll_requests)

    def info(self):
        with self.lock:
            return {"channel": self.channel, "rows": len(self.rows),
                    "push_position": self.push_pos, "released": self.released,
                    "received": len(self.received), "poll_requests": len(self.poll_requests),
                    "fault": self.fault.describe() if self.fault else None,
                    "gateway": self.gateway}

    # ----- control routes --------------------------------------------------------------

    def ctl_faults(self, body):
        if body.get("clear"):
            with self.lock:
                self.fault = None
            return json_response(200, {"fault": None})
        fault = Fault(body)
        with self.lock:
            self.fault = fault
        return json_response(200, {"fault": fault.describe()})

    def ctl_release(self, body):
        count = int_field(body, "count", None, 0)
        with self.lock:
            self.released = count
        return json_response(200, {"released": count, "total": self.item_count()})

    def ctl_push(self, body):
        corrupt = body.get("corrupt", "none")
        if corrupt not in CORRUPTIONS[self.channel]:
            raise BadRequest(f"corrupt must be one of {', '.join(CORRUPTIONS[self.channel])}")
        concurrency = int_field(body, "concurrency", 1, 1, 64)
        timeout = int_field(body, "timeout_ms", 30_000, 1, 600_000) / 1000
        if "payload" in body:
            if not isinstance(body["payload"], dict):
                raise BadRequest("payload must be a JSON object")
            jobs = [(body["payload"], None)]
        else:
            jobs = self.reserve_rows(body)
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            batches = list(pool.map(lambda job: self.send_payload(job[0], job[1], corrupt,
                                                                  timeout), jobs))
        return json_response(200, {"results": [r for batch in batches for r in batch]})

    def reserve_rows(self, body):
        """Picks the sample rows to push and moves the push position past them; with
        `shuffle` (a seed), sends them in a random order, as a backlog pushed at once."""
        count = int_field(body, "count", 1, 0)
        seed = body.get("shuffle")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise BadRequest("shuffle must be an integer seed")
        with self.lock:
            start = int_field(body, "start", self.push_pos, 0)
            end = min(start + count, len(self.rows))
            self.push_pos = max(start, end)
        rows = [(self.rows[i]["payload"], self.rows[i]["seq"]) for i in range(start, end)]
        if seed is not None:
            random.Random(seed).shuffle(rows)
        return rows

    def ctl_feedback(self, body):
        corrupt = body.pop("corrupt", "none")
        if corrupt not in CORRUPTIONS["city-app"] or corrupt == "replay":
            raise BadRequest("corrupt must be none, bad_auth, bad_signature or stale_timestamp")
        url = f"{self.gateway}/intake/city-app/feedback"
        headers, data = self.city_app_request(body, corrupt)
        status, answer, error = http_send(url, "POST", headers, data, 30)
        return json_response(200, {"http_status": status, "answer": answer, "error": error})

    def ctl_open311_status(self, body):
        """Fetches a request's status (or the list) from the gateway, as Open311 clients do."""
        rid = body.get("id")
        query = body.get("query") or {}
        if not isinstance(query, dict):
            raise BadRequest("query must be an object")
        if rid is None:
            path = "/open311/v2/requests.json"
        else:
            path = f"/open311/v2/requests/{urllib.parse.quote(str(rid), safe='')}.json"
        url = self.gateway + path + ("?" + urllib.parse.urlencode(query) if query else "")
        status, answer, error = http_send(url, "GET", {"Accept": "application/json"}, None, 30)
        return json_response(200, {"http_status": status, "answer": answer, "error": error})

    # ----- pushing to the gateway ------------------------------------------------------

    def send_payload(self, payload, seq, corrupt, timeout):
        """Sends one payload (twice for replay) and returns the result entries."""
        url, headers, data = self.build_push(payload, corrupt)
        attempts = 2 if corrupt == "replay" else 1
        results = []
        for attempt in range(1, attempts + 1):
            status, answer, error = http_send(url, "POST", headers, data, timeout)
            result = {"source_id": self.source_id(payload, seq), "http_status": status,
                      "answer": answer, "seq": seq}
            if attempts > 1:
                result["attempt"] = attempt
            if error:
                result["error"] = error
            results.append(result)
        return results

    def source_id(self, payload, seq):
        field = SOURCE_ID_FIELD.get(self.channel)
        return payload.get(field) if field else seq

    def wrong_secret(self, corrupt):
        return self.secret + "-wrong" if corrupt == "bad_auth" else self.secret

    def build_push(self, payload, corrupt):
        """URL, headers and body bytes of one push, as the channel sends it."""
        base = self.gateway
        if self.channel == "open311":
            form = {k: form_value(v) for k, v in payload.items() if v is not None}
            form["api_key"] = self.wrong_secret(corrupt)
            data = urllib.parse.urlencode(form).encode("ascii")
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            return f"{base}/open311/v2/requests.json", headers, data
        if self.channel == "city-app":
            headers, data = self.city_app_request(payload, corrupt)
            return f"{base}/intake/city-app", headers, data
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.channel == "hotline":
            headers["Authorization"] = f"Bearer {self.wrong_secret(corrupt)}"
        else:
            headers["X-Api-Key"] = self.wrong_secret(corrupt)
        return f"{base}/intake/{self.channel}", headers, data

    def city_app_request(self, obj, corrupt):
        """Headers and body of a signed city-app request, corrupted as asked."""
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        ts = int(time.time()) - (400 if corrupt == "stale_timestamp" else 0)
        signed = b'{"tampered":true}' if corrupt == "bad_signature" else data
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Timestamp": str(ts),
                   "X-Signature": sign(self.wrong_secret(corrupt), ts, signed)}
        return headers, data

    # ----- callbacks from the gateway --------------------------------------------------

    def hotline_fk(self, req):
        if req.header("authorization") != f"Bearer {self.secret}":
            return json_response(200, {"code": 4010, "msg": "身份认证失败"})
        body = parse_json_object(req.body)
        problems = []
        if not isinstance(body.get("gdbh"), str) or not body.get("gdbh"):
            problems.append("gdbh 缺失")
        if body.get("zt") not in HOTLINE_ZT:
            problems.append("zt 取值错误")
        if not valid_local_time(body.get("clsj")):
            problems.append("clsj 格式应为 YYYY-MM-DD HH:MM:SS")
        for key in ("blbm", "bljg"):
            if not isinstance(body.get(key), str):
                problems.append(f"{key} 缺失")
        if problems:
            return json_response(200, {"code": 4001, "msg": "参数错误：" + "；".join(problems)})
        return json_response(200, {"code": 0, "msg": "ok"})

    def city_app_progress(self, req, ticket_id):
        problem = self.check_signature(req)
        if problem:
            return json_response(401, {"error": {"code": "BAD_SIGNATURE", "message": problem}})
        body = parse_json_object(req.body)
        status = body.get("status")
        if status not in CITY_APP_STATUSES:
            return city_app_error(400, "INVALID_ARGUMENT", f"unknown status {status!r}")
        if not valid_rfc3339(body.get("time")):
            return city_app_error(400, "INVALID_ARGUMENT", "time must be RFC 3339 with offset")
        with self.lock:
            if (ticket_id, status) in self.progress_seen:
                return city_app_error(409, "ALREADY_EXISTS",
                                      f"progress {status} already received for {ticket_id}")
            self.progress_seen.add((ticket_id, status))
        return json_response(200, {})

    def check_signature(self, req):
        """None when the city-app signature and timestamp are good, else the reason."""
        ts = req.header("x-timestamp")
        sig = req.header("x-signature")
        if not ts or not sig:
            return "missing X-Timestamp or X-Signature"
        if not re.fullmatch(r"[0-9]{1,12}", ts):
            return "X-Timestamp must be Unix seconds"
        if abs(time.time() - int(ts)) > SIGNATURE_WINDOW_S:
            return "timestamp outside the 300 s window"
        if not hmac.compare_digest(sig, sign(self.secret, ts, req.body)):
            return "signature does not match"
        return None

    def community_status(self, req, event_no):
        if req.header("x-api-key") != self.secret:
            return json_response(401, {"success": False, "errMsg": "invalid api key"})
        body = parse_json_object(req.body)
        code = body.get("statusCode")
        if isinstance(code, bool) or code not in range(1, 9):
            return json_response(400, {"success": False, "errMsg": "statusCode must be 1..8"})
        op = body.get("operateTime")
        if isinstance(op, bool) or not isinstance(op, int) or op < 10**12:
            return json_response(400, {"success": False,
                                       "errMsg": "operateTime must be Unix milliseconds"})
        return json_response(200, {"success": True})

    def leader_board_reply(self, req, tid):
        if req.header("appkey") != self.secret:
            return json_response(401, {"code": 401, "msg": "bad app key"})
        body = parse_json_object(req.body)
        if not isinstance(body.get("content"), str) or not body["content"].strip():
            return json_response(400, {"code": 400, "msg": "content is required"})
        return json_response(200, {"code": 200, "msg": "ok"})

    def supervision_feedback(self, req, clue_id):
        if req.header("token") != self.secret:
            return xml_error(401, "bad token")
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError as e:
            return xml_error(400, f"malformed XML: {e}")
        if root.tag != "feedback" or not (root.findtext("status") or "").strip():
            return xml_error(400, "expected <feedback> with a <status>")
        return xml_response(200, "<response><code>0</code><message>ok</message></response>")

    # ----- poll routes -----------------------------------------------------------------

    def rate_limited(self):
        """True when this leader-board poll exceeds 2 requests in the last second."""
        now = time.monotonic()
        with self.lock:
            while self.poll_times and now - self.poll_times[0] >= 1.0:
                self.poll_times.popleft()
            if len(self.poll_times) >= LB_RATE_PER_S:
                return True
            self.poll_times.append(now)
            return False

    def leader_board_list(self, req):
        if self.rate_limited():
            return json_response(429, {"code": 429, "msg": "too many requests"},
                                 {"Retry-After": "1"})
        if req.header("appkey") != self.secret:
            return json_response(401, {"code": 401, "msg": "bad app key"})
        since = req.query.get("since", "")
        offset = 0
        if since:
            m = CURSOR_RE.match(since)
            if not m or int(m.group(1)) > len(self.rows):
                return json_response(400, {"code": 400, "msg": "unknown cursor"})
            offset = int(m.group(1))
        limit = int_param(req.query, "limit", 20, 1, 10**9)
        limit = min(limit, 100)
        visible = self.visible_count()
        end = min(offset + limit, visible) if offset < visible else offset
        items = [self.rows[i]["payload"] for i in range(offset, end)]
        next_cursor = f"c-{end}" if items else (since or "c-0")
        data = {"items": items, "nextCursor": next_cursor, "hasMore": end < visible}
        return json_response(200, {"code": 200, "data": data})

    def supervision_list(self, req):
        if req.header("token") != self.secret:
            return xml_error(401, "bad token")
        start = req.query.get("startTime", "")
        if not valid_local_time(start):
            return xml_error(400, "startTime must be YYYY-MM-DD HH:MM:SS")
        try:
            page = int_param(req.query, "page", 1, 1, 10**9)
            size = int_param(req.query, "pageSize", 20, 1, 100)
        except BadRequest as e:
            return xml_error(400, str(e))
        visible = self.clues[:self.visible_count()]
        matching = [text for t, _, text in visible if t >= start]
        chosen = matching[(page - 1) * size: page * size]
        return xml_response(200, f"<response><total>{len(matching)}</total>"
                                 f"{''.join(chosen)}</response>")

    # ----- fault answers ---------------------------------------------------------------

    def fault_response(self, fault):
        extra = {"Retry-After": "1"} if fault.status == 429 else None
        if self.channel == "hotline" and fault.code is not None:
            return json_response(fault.status, {"code": fault.code, "msg": "系统繁忙，请稍后再试"},
                                 extra)
        return error_response(self.channel, fault.status, "service unavailable", extra)


def error_response(channel, status, message, headers=None):
    """An error answer in the channel's own style, with the given HTTP status."""
    if channel == "supervision":
        return xml_response(status, f"<error><code>{status}</code><message>"
                                    f"{xml_escape(message)}</message></error>", headers)
    if channel == "city-app":
        code = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(
            status, "UNAVAILABLE")
        return json_response(status, {"error": {"code": code, "message": message}}, headers)
    if channel == "community-app":
        return json_response(status, {"success": False, "errMsg": message}, headers)
    if channel == "open311":
        return json_response(status, [{"code": status, "description": message}], headers)
    return json_response(status, {"code": status, "msg": message}, headers)


def city_app_error(status, code, message):
    return json_response(status, {"error": {"code": code, "message": message}})


def accepted(channel, status, reply):
    """Whether the system took the callback: 2xx, and for the hotline also code 0."""
    if status is None or not 200 <= status < 300:
        return False
    return channel != "hotline" or (isinstance(reply, dict) and reply.get("code") == 0)


def form_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def api_routes(sim):
    """(method, path regex, kind, handler) of the channel's own API routes."""
    c = sim.channel
    routes = {
        "hotline": [("POST", r"/api/gd/fk", "callback", lambda r: sim.hotline_fk(r))],
        "city-app": [("POST", r"/open/v1/tickets/([^/]+)/progress", "callback",
                      sim.city_app_progress)],
        "community-app": [("PUT", r"/api/events/([^/]+)/status", "callback",
                           sim.community_status)],
        "leader-board": [("GET", r"/api/messages", "poll", sim.leader_board_list),
                         ("POST", r"/api/messages/([^/]+)/reply", "callback",
                          sim.leader_board_reply)],
        "supervision": [("GET", r"/dc/clues", "poll", sim.supervision_list),
                        ("POST", r"/dc/clues/([^/]+)/feedback", "callback",
                         sim.supervision_feedback)],
        "open311": [],
    }[c]
    return [(m, re.compile(p + r"/?$"), k, h) for m, p, k, h in routes]


def control_routes(sim):
    """(method, path) → handler(body dict) of the /_sim/ control API."""
    routes = {
        ("GET", "/_sim/received"): lambda b: json_response(200, sim.snapshot("callback")),
        ("GET", "/_sim/requests"): lambda b: json_response(200, sim.snapshot("poll")),
        ("GET", "/_sim/info"): lambda b: json_response(200, sim.info()),
        ("GET", "/_sim/faults"): lambda b: json_response(200, sim.info()["fault"]),
        ("POST", "/_sim/faults"): sim.ctl_faults,
        ("POST", "/_sim/reset"): lambda b: (sim.reset(), json_response(200, {"reset": True}))[1],
    }
    if sim.channel in PUSH_CHANNELS:
        routes[("POST", "/_sim/push")] = sim.ctl_push
    if sim.channel == "city-app":
        routes[("POST", "/_sim/feedback")] = sim.ctl_feedback
    if sim.channel == "open311":
        routes[("POST", "/_sim/status")] = sim.ctl_open311_status
    if sim.channel in POLL_CHANNELS:
        routes[("POST", "/_sim/release")] = sim.ctl_release
    return routes


class Request:
    """What a handler needs of an incoming request."""

    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())


class Handler(BaseHTTPRequestHandler):
    """Reads each request fully, routes it, and never lets an error escape."""

    protocol_version = "HTTP/1.1"
    server_version = "channel-sim/1"
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits
    # for the client's delayed ACK (40 ms per answer), which real servers do not do.
    disable_nagle_algorithm = True
    sim = None  # set by make_server
    controls = None
    routes = None
    verbose = False

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write(f"[{self.sim.channel}] {fmt % args}\n")

    def dispatch(self):
        try:
            raw = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send(json_response(e.status, {"error": str(e)}))
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in
                 urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, path, query, headers, raw)
        try:
            if path.startswith("/_sim/"):
                self.send(self.control(req))
            else:
                self.api(req)
        except Exception as e:  # a bug or odd input must not kill the server
            sys.stderr.write(f"[{self.sim.channel}] error on {self.command} {path}: {e!r}\n")
            self.send(json_response(500, {"error": str(e)}))

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length", "0") or "0"
        if not length.isdigit():
            raise BadRequest("bad Content-Length")
        if int(length) > MAX_BODY:
            raise BadRequest("body too large", 413)
        return self.rfile.read(int(length))

    def read_chunked(self):
        data = b""
        while True:
            size_line = self.rfile.readline(100).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest("bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1000).strip():
                    pass
                return data
            if len(data) + size > MAX_BODY:
                raise BadRequest("body too large", 413)
            data += self.rfile.read(size)
            self.rfile.readline(10)

    def control(self, req):
        handler = self.controls.get((req.method, req.path.rstrip("/")))
        if handler is None:
            known = {p for _, p in self.controls}
            status = 405 if req.path.rstrip("/") in known else 404
            return json_response(status, {"error": f"no control route {req.method} {req.path}"})
        try:
            return handler(parse_json_object(req.body) if req.method == "POST" else {})
        except BadRequest as e:
            return json_response(e.status, {"error": str(e)})

    def api(self, req):
        route, args = self.match(req)
        if route is None:
            self.send(self.not_found(req, args))
            return
        _, _, kind, handler = route
        fault = self.sim.take_fault()
        resp = None
        if fault:
            time.sleep(fault.delay_ms / 1000)
            if fault.drop:
                self.close_connection = True
                self.record(kind, req, None, None, fault=True)
                return
            if fault.status is not None:
                resp = self.sim.fault_response(fault)
        if resp is None:
            resp = self.call(handler, req, args)
        self.record(kind, req, resp.status, resp.reply, fault=bool(fault and fault.status),
                    delayed_ms=fault.delay_ms if fault else 0)
        self.send(resp)

    def call(self, handler, req, args):
        try:
            return handler(req, *args)
        except BadRequest as e:
            if self.sim.channel == "hotline":  # its envelope: HTTP 200, non-zero code
                return json_response(200, {"code": 4001, "msg": f"参数错误：{e}"})
            return error_response(self.sim.channel, e.status, str(e))

    def match(self, req):
        """The route matching method and path, with its captured path parameters."""
        path_known = False
        for route in self.routes:
            m = route[1].match(req.path)
            if m:
                path_known = True
                if route[0] == req.method:
                    return route, tuple(urllib.parse.unquote(g) for g in m.groups())
        return None, path_known

    def not_found(self, req, path_known):
        status = 405 if path_known else 404
        return error_response(self.sim.channel, status, f"no route {req.method} {req.path}")

    def record(self, kind, req, status, reply, fault=False, delayed_ms=0):
        entry = {"method": req.method, "path": urllib.parse.unquote(req.path),
                 "query": req.query,
                 "status": status, "time": time.time(),
                 "user_agent": req.headers.get("user-agent", "")}
        if fault:
            entry["fault"] = True
        if delayed_ms:
            entry["delayed_ms"] = delayed_ms
        if kind == "callback":
            entry["headers"] = req.headers
            entry["body"] = (req.body.decode("utf-8", errors="replace")
                             if self.sim.channel == "supervision" else decode_body(req.body))
            entry["reply"] = reply
            entry["accepted"] = accepted(self.sim.channel, status, reply)
            if self.sim.channel == "leader-board" and isinstance(entry["body"], dict):
                text = f"{entry['body'].get('content', '')} {entry['body'].get('dept', '')}"
                if PERSONAL_DATA_RE.search(text):
                    entry["warning"] = "reply contains a phone or ID-card number"
        self.sim.record(kind, entry)

    def send(self, resp):
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)


def make_server(sim, port, verbose):
    handler = type("SimHandler", (Handler,), {
        "sim": sim, "controls": control_routes(sim), "routes": api_routes(sim),
        "verbose": verbose})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channel", required=True, choices=sorted(DEFAULT_SECRETS))
    ap.add_argument("--port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--sample", default=os.environ.get("PETITION_SAMPLE", DEFAULT_SAMPLE))
    ap.add_argument("--gateway", default="http://127.0.0.1:8080")
    ap.add_argument("--secret", default=None, help="the channel's credential")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    ap.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows = load_rows(args.sample, args.channel, args.limit)
        sim = Simulator(args.channel, rows, args.gateway,
                        args.secret or DEFAULT_SECRETS[args.channel])
    except (OSError, ValueError, KeyError, ET.ParseError) as e:
        print(f"channel_sim: cannot load the sample {args.sample}: {e}", file=sys.stderr)
        return 2
    try:
        server = make_server(sim, args.port, args.verbose)
    except OSError as e:
        print(f"channel_sim: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    print(f"[{args.channel}] {len(rows)} sample rows, gateway {sim.gateway}", file=sys.stderr)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
