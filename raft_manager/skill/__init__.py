"""The raft-manager skill: the agent card (skill.yaml) as a model, SKILL.md and the agent
definition rendered from it, the Agent Skills rules they must keep, and installing them where
an agent framework looks.

card.py: the model of skill.yaml; spec.py: the Agent Skills specification's rules; render.py:
the jinja2 renderings (templates/); live.py: the cluster's state for a live rendering;
install.py: copying the skill into a framework's folders; paths.py: where the files are;
strict_yaml.py: YAML without silent surprises. The commands are in raft_manager/cli/skill.py
and raft_manager/cli/agent.py (`agent render`).
"""
