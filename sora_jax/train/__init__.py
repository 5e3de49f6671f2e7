"""Training: sharded train state and step (one for every stage), batches onto the mesh."""
