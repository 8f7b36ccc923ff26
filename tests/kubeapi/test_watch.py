"""Watch: streamed events, resuming from a resourceVersion, bookmarks, timeouts and 410 Gone."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import watch

from .conftest import GROUP, VERSION, Api, widget
from .fixtures import KubeAPI
from .rawhttp import Http

watch_factory: Any = watch.Watch  # untyped in the client

WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
CMS = "/api/v1/namespaces/default/configmaps"
MERGE = "application/merge-patch+json"


def collect(http: Http, path: str, count: int, **params: Any) -> list[dict[str, Any]]:
    events = []
    for event in http.stream(path, **params):
        events.append(event)
        if len(events) >= count:
            break
    return events


def later(delay: float, fn: Any, *args: Any) -> None:
    threading.Timer(delay, fn, args).start()


class TestWatchStream:
    def test_events_arrive_while_the_stream_is_open(self, api: KubeAPI) -> None:
        http = Http(api.url)
        rv = http.call("GET", WIDGETS)[1]["metadata"]["resourceVersion"]

        def produce() -> None:
            http.call("POST", WIDGETS, widget("w"))
            http.call("PATCH", f"{WIDGETS}/w", {"spec": {"replicas": 2}}, MERGE)
            http.call("DELETE", f"{WIDGETS}/w")

        later(0.2, produce)
        started = time.monotonic()
        events = collect(http, WIDGETS, 3, resourceVersion=rv)
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        assert events[1]["object"]["spec"]["replicas"] == 2 and events[0]["object"]["kind"] == "Widget"
        assert time.monotonic() - started < 5
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs)

    def test_watch_without_resource_version_starts_with_synthetic_added_events(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call("POST", CMS, {"metadata": {"name": "a"}})
        http.call("POST", CMS, {"metadata": {"name": "b"}})
        events = collect(http, CMS, 2)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]

    def test_watch_from_a_resource_version_replays_later_history(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, a = http.call("POST", CMS, {"metadata": {"name": "a"}})
        http.call("POST", CMS, {"metadata": {"name": "b"}})
        http.call("DELETE", f"{CMS}/a")
        events = collect(http, CMS, 2, resourceVersion=a["metadata"]["resourceVersion"])
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "b"),
            ("DELETED", "a"),
        ]

    def test_selectors_turn_label_changes_into_added_and_deleted(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, cm = http.call("POST", CMS, {"metadata": {"name": "a"}})
        rv = cm["metadata"]["resourceVersion"]
        http.call("PATCH", f"{CMS}/a", {"metadata": {"labels": {"app": "x"}}}, MERGE)
        http.call("PATCH", f"{CMS}/a", {"data": {"k": "v"}}, MERGE)
        http.call("PATCH", f"{CMS}/a", {"metadata": {"labels": {"app": "y"}}}, MERGE)
        events = collect(http, CMS, 3, resourceVersion=rv, labelSelector="app=x")
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]

    def test_single_object_and_legacy_watch_paths(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, cm = http.call("POST", CMS, {"metadata": {"name": "a"}})
        http.call("POST", CMS, {"metadata": {"name": "b"}})
        http.call("PATCH", f"{CMS}/a", {"data": {"k": "v"}}, MERGE)
        rv = cm["metadata"]["resourceVersion"]
        events = collect(http, "/api/v1/watch/namespaces/default/configmaps/a", 1, resourceVersion=rv)
        assert events[0]["type"] == "MODIFIED" and events[0]["object"]["metadata"]["name"] == "a"

    def test_cluster_wide_watch_sees_every_namespace(self, api: KubeAPI, core: Api) -> None:
        http = Http(api.url)
        rv = http.call("GET", "/api/v1/configmaps")[1]["metadata"]["resourceVersion"]
        core.create_namespace({"metadata": {"name": "n2"}})
        core.create_namespaced_config_map("n2", {"metadata": {"name": "x"}})
        core.create_namespaced_config_map("default", {"metadata": {"name": "y"}})
        events = collect(http, "/api/v1/configmaps", 2, resourceVersion=rv)
        assert [e["object"]["metadata"]["namespace"] for e in events] == ["n2", "default"]


class TestBookmarksAndTimeouts:
    def test_bookmarks_carry_the_current_resource_version(self, api: KubeAPI) -> None:
        http = Http(api.url)
        rv = http.call("GET", WIDGETS)[1]["metadata"]["resourceVersion"]
        http.call("POST", CMS, {"metadata": {"name": "unrelated"}})
        current = http.call("GET", CMS)[1]["metadata"]["resourceVersion"]
        events = collect(http, WIDGETS, 1, resourceVersion=rv, allowWatchBookmarks="true")
        assert events[0]["type"] == "BOOKMARK"
        assert events[0]["object"]["kind"] == "Widget"
        assert events[0]["object"]["metadata"]["resourceVersion"] == current

    def test_send_initial_events_ends_with_an_annotated_bookmark(self, api: KubeAPI) -> None:
        http = Http(api.url)
        http.call("POST", CMS, {"metadata": {"name": "a"}})
        events = collect(
            http,
            CMS,
            2,
            sendInitialEvents="true",
            allowWatchBookmarks="true",
            resourceVersionMatch="NotOlderThan",
        )
        assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
        assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}

    def test_no_bookmarks_unless_asked(self, api: KubeAPI) -> None:
        http = Http(api.url)
        events = collect(http, WIDGETS, 5, timeoutSeconds="1")
        assert events == []

    def test_timeout_seconds_closes_the_stream(self, api: KubeAPI) -> None:
        started = time.monotonic()
        list(Http(api.url).stream(CMS, timeoutSeconds="1", resourceVersion="1"))
        assert 0.9 < time.monotonic() - started < 3

    def test_official_client_watch_streams_objects(self, api: KubeAPI, core: Api) -> None:
        later(0.2, core.create_namespaced_config_map, "default", {"metadata": {"name": "w"}})
        w: Any = watch_factory()
        for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5):
            assert event["type"] == "ADDED" and event["object"].metadata.name == "w"
            w.stop()


class TestExpiredResourceVersions:
    def test_watch_from_a_compacted_resource_version_gets_a_410_error_event(self, api: KubeAPI) -> None:
        http = Http(api.url)
        _, cm = http.call("POST", CMS, {"metadata": {"name": "a"}})
        http.call("PATCH", f"{CMS}/a", {"data": {"x": "1"}}, MERGE)
        api.compact()
        http.call("PATCH", f"{CMS}/a", {"data": {"x": "2"}}, MERGE)
        events = collect(http, CMS, 1, resourceVersion=cm["metadata"]["resourceVersion"])
        assert events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"].startswith("too old resource version")

    def test_history_window_is_bounded(self, kube_api_factory: Any) -> None:
        api = kube_api_factory([], history_size=5)
        http = Http(api.url)
        _, first = http.call("POST", CMS, {"metadata": {"name": "a"}})
        for i in range(10):
            http.call("PATCH", f"{CMS}/a", {"data": {"i": str(i)}}, MERGE)
        events = collect(http, CMS, 1, resourceVersion=first["metadata"]["resourceVersion"])
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        code, body = http.call("GET", CMS, resourceVersion=first["metadata"]["resourceVersion"])
        assert code == 410 and body["code"] == 410
