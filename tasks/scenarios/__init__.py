"""Scenarios and what they produce: the file format (`schema`), the traffic simulation
(`traffic`), one variant drawn into a world (`variants`), labelled datasets (`dataset`) and their
label formats (`labels`). The corner-case library is the ``*.yaml`` templates beside them."""
