"""The search service: FastAPI app, micro-batched model forward, auth, audit log and a web page.

Start it with ``radsearch serve INDEX --run RUN``; build the app in Python with
:func:`radsearch.service.app.create_app`.
"""
