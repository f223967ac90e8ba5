"""The heart's motion as dense fields a user can apply (:mod:`.fields`), the strain they imply
(:mod:`.strain`), and Segment & Track's motion outputs (:mod:`.track`)."""
