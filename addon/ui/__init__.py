"""The interface: the StoryShade sidebar in the 3D viewport and the Sequencer, the look
panels in Object and Collection properties, the character bank's menu, the shot list, the
Download Models lines, the preview icon, and text fitted to a column. Drawing only reads
state; what changes it is an operator. The top room: nothing below imports it."""
