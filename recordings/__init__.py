"""Call recordings, integrity, retention and QA review.

Not built yet: recordings attach to the media tap that the B2BUA's relay will expose
(see the roadmap in README.md). The package exists so that its place in the layout is
fixed and its imports never move.
"""
