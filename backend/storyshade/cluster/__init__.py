"""Scale-out on Ray: the server stays the one front door, Ray actors do the rendering.

- `connect`: join the Ray cluster named by `storyshade serve --ray`, or start a private one;
- `worker`: the actor, one per GPU (or CPU slot), keeping its models loaded between jobs;
- `pool`: those actors, where each job goes, and replacements for actors that died;
- `dispatch`: the JobStore runner that ships a job, relays its events, frames and cancel,
  and re-queues it when its worker is lost.

Nothing here is imported unless `--ray` is given; Ray comes with `storyshade[cluster]`.
See docs/cluster.md.
"""
