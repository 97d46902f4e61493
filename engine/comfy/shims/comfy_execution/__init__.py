"""ComfyUI's ``comfy_execution`` package as node packs import it, backed by our executor.

``graph_utils`` (``GraphBuilder``, ``is_link``) builds the sub-graphs a node returns to expand itself;
``graph`` gives ``ExecutionBlocker`` (our ``engine.graph.flow.ExecutionBlocker``) and ``DynamicPrompt``
(a read view of the running graph, what the hidden ``DYNPROMPT`` input receives).
"""
