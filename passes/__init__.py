"""Graph passes (the pass infrastructure arrives with the Passes issue)."""
