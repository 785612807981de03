"""`python -m storyshade` is the `storyshade` command."""

from storyshade.cli import main

raise SystemExit(main())
