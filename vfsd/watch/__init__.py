"""Watching the VFS: the pattern index, the revision-ordered watch history and VFS.WATCH.

``patterns``  PatternIndex: glob patterns indexed by their literal prefix (pure)
``history``   WatchHistory: the bounded window of desired-plane changes, by revision (pure)
``watchers``  Watchers: VFS.WATCH subscriptions, their catch-up from history and live delivery (pure)
``feed``      the desired plane's change sink: stamps events with the entry's revision, fills the history
"""
