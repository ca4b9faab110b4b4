"""The request pipeline: context, fixed phases, dispatch to providers, and the compiled config snapshot."""
