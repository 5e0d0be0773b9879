"""The network simulator behind ``bench/simulate.py``.

- :mod:`.graph`: the follow graph, link latencies and the DHT's provider sets;
- :mod:`.engine`: the discrete-event simulation of nodes running the real
  router and sync planner;
- :mod:`.sizes`: wire sizes of messages, memoised by shape;
- :mod:`.report`: the figures of a run and how the bench prints them.
"""
