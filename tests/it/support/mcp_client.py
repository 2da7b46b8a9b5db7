"""The conductor's /mcp driven by the official MCP Python SDK client (PyPI `mcp`, pinned in
tools/py/requirements.txt), for tests/it/mcp_sdk.rs.

    python3 mcp_client.py URL TOKEN TITLE

With the token: initialize, list the tools, queue a task through tools/call tasks_create
(title TITLE), then read its resource baa://tasks/{id} until the task succeeded. Without a
token, on a session of its own: call tasks_create again and expect an isError result.
Prints one JSON object on stdout with what it saw; the Rust test asserts on it. Any
failure raises, exits non-zero and prints the traceback on stderr. Every wait is bounded.
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

# A task on the stub child succeeds in well under a second; a loaded CI machine is slower.
TASK_DEADLINE_S = 60.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 30.0


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def session_on(url, headers, body):
    async with httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT_S) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                return await body(session, init)


async def authorised(session, init, title):
    tools = await session.list_tools()
    names = sorted(t.name for t in tools.tools)
    created = await session.call_tool(
        "tasks_create", {"title": title, "prompt": "created through MCP by the Python SDK"}
    )
    if created.is_error:
        raise RuntimeError(f"tasks_create failed: {text_of(created)}")
    data = created.structured_content or json.loads(text_of(created))
    task_id = data["task"]["task_id"]
    uri = f"baa://tasks/{task_id}"
    statuses = []
    deadline = asyncio.get_running_loop().time() + TASK_DEADLINE_S
    while True:
        read = await session.read_resource(uri)
        task = json.loads(read.contents[0].text)
        status = task.get("task", task).get("status")
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status == "succeeded":
            break
        if status in ("failed", "canceled"):
            raise RuntimeError(f"task {task_id} ended {status}: {task}")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"task {task_id} not succeeded in {TASK_DEADLINE_S} s: {task}")
        await asyncio.sleep(POLL_S)
    resources = await session.list_resources()
    return {
        "protocolVersion": init.protocol_version,
        "serverName": init.server_info.name,
        "tools": names,
        "taskId": task_id,
        "resourceUri": uri,
        "resourceMime": read.contents[0].mime_type,
        "statuses": statuses,
        "resources": sorted(str(r.uri) for r in resources.resources),
    }


async def anonymous(session, init, title):
    refused = await session.call_tool("tasks_create", {"title": title + " (no token)", "prompt": "x"})
    state = await session.call_tool("system_state", {})
    return {
        "isError": refused.is_error,
        "text": text_of(refused),
        "readIsError": state.is_error,
    }


async def main(url, token, title):
    seen = await session_on(
        url,
        {"Authorization": f"Bearer {token}"},
        lambda s, i: authorised(s, i, title),
    )
    seen["tokenless"] = await session_on(url, {}, lambda s, i: anonymous(s, i, title))
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
